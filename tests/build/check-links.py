#!/usr/bin/env python3
"""Fail when the repository's documentation points at something it lacks.

The repository must stand alone: its README, docs/ and the comments in its
sources name files that a reader can open in this checkout, never a file
of the workspace it was written in. Checked, over every file git tracks
(or, outside a git checkout, every file under the root but build dirs):

 1. Markdown links `[text](target)` in *.md: a relative target must exist,
    resolved from the Markdown file's folder, inside the repository.
 2. Paths in prose: in *.md text (outside fenced code blocks) and in the
    comments of C, proto, meson, SQL, shell and Python files (scripts
    without a suffix too, by their #! line), a token that starts with a top-level folder of
    the repository (`docs/`, `servers/`, ...) or with `../`, or is a bare
    `NAME.md`, must name an existing file or folder: relative to the root,
    to the file's folder, or as the tail of a tracked path (`roles/role.h`
    inside servers/README.md). Only what reads as a path counts: a file
    name with a suffix, a folder with a trailing /, or two levels or more
    (`libim/libim-client` is "either", not a path). Templates
    (`test_<m>.c`, `NNN_name.sql`, `*.c`) are skipped.
 3. Nothing may point outside the repository: no `../shared/`, no
    `/work/...`, and no `../` that climbs above the root.

Usage: check-links.py [ROOT]   (default: the checkout this file is in)
Prints one line per bad reference (file:line: reference: why) and exits 1
if there is any.
"""
import os
import re
import subprocess
import sys

# Files whose comments are prose, by how a comment starts.
C_LIKE = ('.c', '.h', '.proto')
HASH_LIKE = ('.sh', '.py', '.options', '.sql')
HASH_NAMES = ('meson.build', 'meson_options.txt')

# A path-like token: letters, digits and the characters paths use.
TOKEN = re.compile(r'(?<![\w./$-])(\.\./[\w./+-]*|[\w+-]+/[\w./+-]*|[\w.+-]+\.md)\b/?')
MD_LINK = re.compile(r'!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
OUTSIDE = re.compile(r'\.\./shared/|(?<![\w.])/work/|\bshared/seed/')
# Placeholders and globs: not a file name to check.
TEMPLATE = re.compile(r'[*<>{}\[\]$]|NNN|XXX')
# Written at run time, never committed: named in prose, absent here.
GENERATED = ('bench/fault-soak.out', 'table.md')


def repo_files(root):
    try:
        out = subprocess.run(
            ['git', '-C', root, 'ls-files', '--cached', '--others',
             '--exclude-standard', '-z'],
            check=True, capture_output=True).stdout.decode()
        files = [f for f in out.split('\0') if f]
        if files:
            return sorted(f for f in files
                          if os.path.exists(os.path.join(root, f)))
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, subdirs, names in os.walk(root):
        rel = os.path.relpath(d, root)
        subdirs[:] = [s for s in subdirs
                      if not s.startswith(('.', 'build'))
                      and not (rel == 'subprojects')]
        files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    return sorted(files)


def comment_lines(path, text):
    """(line number, text) of the prose in a file: all of a Markdown file,
    the comments of a source file, nothing of other files."""
    lines = text.split('\n')
    name = os.path.basename(path)
    out = []
    if path.endswith('.md'):
        # Fenced code blocks are commands: they name build outputs
        # (`ninja -C build bench/bench_core`), not files of the checkout.
        fenced = False
        for no, line in enumerate(lines, 1):
            if line.lstrip().startswith(('```', '~~~')):
                fenced = not fenced
                continue
            if not fenced:
                out.append((no, line))
        return out
    if path.endswith(C_LIKE):
        in_block = False
        for no, line in enumerate(lines, 1):
            rest = line
            parts = []
            while rest:
                if in_block:
                    end = rest.find('*/')
                    if end < 0:
                        parts.append(rest)
                        rest = ''
                    else:
                        parts.append(rest[:end])
                        rest = rest[end + 2:]
                        in_block = False
                    continue
                # Skip string literals so "/*" or "//" inside them do
                # not start a comment.
                m = re.search(r'"(?:[^"\\]|\\.)*"|/\*|//', rest)
                if m is None:
                    break
                if m.group(0) == '/*':
                    in_block = True
                    rest = rest[m.end():]
                elif m.group(0) == '//':
                    parts.append(rest[m.end():])
                    break
                else:
                    rest = rest[m.end():]
            if parts:
                out.append((no, ' '.join(parts)))
        return out
    if path.endswith(HASH_LIKE) or name in HASH_NAMES or \
            text.startswith('#!'):
        for no, line in enumerate(lines, 1):
            s = line.lstrip()
            if s.startswith('#') and not s.startswith('#!'):
                out.append((no, s[1:]))
            elif path.endswith('.sql') and s.startswith('--'):
                out.append((no, s[2:]))
        return out
    return out


def inside(root, p):
    root = os.path.realpath(root)
    p = os.path.realpath(p)
    return p == root or p.startswith(root + os.sep)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), '..', '..'))
    files = repo_files(root)
    tops = {f.split('/')[0] for f in files if '/' in f}
    tops.discard('.ci')
    # Every tracked path and its folders, for tail matches.
    known = set()
    for f in files:
        parts = f.split('/')
        for i in range(len(parts)):
            known.add('/'.join(parts[i:]))
            known.add('/'.join(parts[i:-1]) if i < len(parts) - 1 else '')
    basenames = {os.path.basename(f) for f in files}
    bad = []

    def exists(src, ref):
        ref = ref.rstrip('/')
        if ref == '':
            return True
        here = os.path.dirname(os.path.join(root, src))
        for base in (root, here):
            p = os.path.normpath(os.path.join(base, ref))
            if inside(root, p) and os.path.exists(p):
                return True
        if not ref.startswith('../') and ref in known:
            return True
        return '/' not in ref and ref in basenames

    for src in files:
        if not (src.endswith('.md') or src.endswith(C_LIKE + HASH_LIKE)
                or os.path.basename(src) in HASH_NAMES
                or '.' not in os.path.basename(src)):
            continue  # scripts without a suffix: by their #! line below
        if src == 'tests/build/check-links.py':
            continue  # its docstring names the patterns it refuses
        try:
            with open(os.path.join(root, src), encoding='utf-8',
                      errors='replace') as f:
                text = f.read()
        except OSError as e:
            bad.append('%s: unreadable: %s' % (src, e))
            continue
        here = os.path.dirname(os.path.join(root, src))
        for no, line in comment_lines(src, text):
            if OUTSIDE.search(line):
                bad.append('%s:%d: %s: points outside the repository'
                           % (src, no, OUTSIDE.search(line).group(0)))
            if src.endswith('.md'):
                for m in MD_LINK.finditer(line):
                    t = m.group(1).split('#')[0]
                    if t == '' or re.match(r'^[a-z][a-z0-9+.-]*:', t):
                        continue  # an anchor, or a URL (http:, mailto:)
                    p = os.path.normpath(os.path.join(here, t))
                    if not inside(root, p):
                        bad.append('%s:%d: %s: link leaves the repository'
                                   % (src, no, t))
                    elif not os.path.exists(p):
                        bad.append('%s:%d: %s: link to a missing file'
                                   % (src, no, t))
            for m in TOKEN.finditer(line):
                ref = m.group(0).rstrip('.,:;')
                # The whole word around the token: `conformance.[ch]`.
                a, b = m.start(), m.end()
                while a > 0 and not line[a - 1].isspace():
                    a -= 1
                while b < len(line) and not line[b].isspace():
                    b += 1
                if TEMPLATE.search(line[a:b]) or \
                        ref.rstrip('/').startswith(GENERATED):
                    continue
                first = ref.split('/')[0]
                if not (ref.startswith('../') or first in tops or
                        ('/' not in ref and ref.endswith('.md'))):
                    continue
                # `libim/libim-client` is English for "either", not a path:
                # a path names a file (NAME.EXT), a folder (trailing /)
                # or goes deeper than one level.
                last = ref.rstrip('/').split('/')[-1]
                if not ('.' in last or ref.endswith('/') or
                        ref.rstrip('/').count('/') >= 2):
                    continue
                if ref.startswith('../'):
                    p = os.path.normpath(os.path.join(here, ref))
                    if not inside(root, p):
                        bad.append('%s:%d: %s: leaves the repository'
                                   % (src, no, ref))
                        continue
                if not exists(src, ref):
                    bad.append('%s:%d: %s: no such file in the repository'
                               % (src, no, ref))
    for b in bad:
        print(b)
    if bad:
        print('check-links: %d bad reference(s) in %s' % (len(bad), root))
        return 1
    print('check-links: %d files checked, every reference resolves'
          % len(files))
    return 0


if __name__ == '__main__':
    sys.exit(main())
