#include "imbench.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
imb_proc_sample(int pid, imb_proc *out)
{
	char path[64], buf[2048], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;
	int field;

	memset(out, 0, sizeof(*out));
	out->pid = pid;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parens: fields count from the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL) {
		return -1;
	}
	p++;
	for (field = 3; field < 14 && p; field++) {
		p = strchr(p + 1, ' ');
	}
	if (p == NULL || sscanf(p, " %llu %llu", &ut, &st) != 2) {
		return -1;
	}
	out->cpu_ticks = ut + st;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	while (fgets(buf, sizeof(buf), f)) {
		unsigned long long v;

		if (sscanf(buf, "VmRSS: %llu", &v) == 1) {
			out->rss_kb = v;
		} else if (sscanf(buf, "VmHWM: %llu", &v) == 1) {
			out->hwm_kb = v;
		}
	}
	fclose(f);
	/* Time runnable but not running: the share a co-located load
	 * generator (or anything else) took from the server. */
	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	f = fopen(path, "r");
	if (f != NULL) {
		unsigned long long run, wait;

		if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
			out->run_ns = run;
			out->wait_ns = wait;
		}
		fclose(f);
	}
	out->ok = 1;
	return 0;
}

uint32_t
imb_proc_find(const char *name, int *pids, uint32_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	uint32_t n = 0;

	if (d == NULL) {
		return 0;
	}
	while ((e = readdir(d)) != NULL && n < max) {
		char path[300], comm[64];
		FILE *f;
		int pid = atoi(e->d_name);

		if (pid <= 0) {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/comm", pid);
		f = fopen(path, "r");
		if (f == NULL) {
			continue;
		}
		if (fgets(comm, sizeof(comm), f)) {
			comm[strcspn(comm, "\n")] = '\0';
			if (strcmp(comm, name) == 0) {
				pids[n++] = pid;
			}
		}
		fclose(f);
	}
	closedir(d);
	return n;
}
