/*
 * im-bench: load generator for libim servers. The parent runs the store
 * baseline, builds the plan, forks --procs workers (each a libev loop under
 * the per-process fd limit), samples the server's /proc while they run
 * through the phases in step, then merges their results from pipes and
 * prints a table and JSON.
 */
#include "imbench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const code_names[IMB_CODES] = {
        "OK",
        "ERR_INTERNAL",
        "ERR_BAD_REQUEST",
        "ERR_AUTH",
        "ERR_NOT_LOGGED_IN",
        "ERR_NOT_MEMBER",
        "ERR_NOT_FOUND",
        "ERR_TOO_BIG",
        "ERR_UNAVAILABLE",
        "ERR_FULL",
        "ERR_REDIRECT",
        "ERR_SESSION",
        "ERR_TIMEOUT",
        "code_13",
        "code_14",
        "code_other",
};

/* --server-pid first (they count in RSS per connection), --other-pid after. */
#define PIDS_MAX (2 * IMB_MAX_SERVER_PIDS)

typedef struct sample {
	imb_proc p[PIDS_MAX];
	uint64_t t_us;
	int taken;
} sample;

typedef struct report {
	const imb_opts *o;
	int argc;
	char **argv;
	imb_result r;
	imb_baseline base;
	int have_base;
	int pids[PIDS_MAX];
	uint32_t npids;
	uint32_t nrss_pids; /* the first nrss_pids count in RSS per conn */
	sample s_login0, s_login1, s_win0, s_win1, s_end;
	uint64_t t0[IMB_P_COUNT];
	double acks_s, deliv_s, ratio;
	double login_s, login_all_ms;
	double resume_all_ms, caught_all_ms;
	double rss_per_conn;
	/* Server RSS (KiB, all pids) once a second through the window: a leak
	 * shows as growth after the warm-up. */
	uint64_t rss_series[3600];
	uint32_t nrss;
	uint64_t t_rss_next;
	uint64_t unexpected;
	int crashed;
} report;

static void
take(report *R, sample *s, uint64_t now)
{
	uint32_t i;

	for (i = 0; i < R->npids; i++) {
		imb_proc_sample(R->pids[i], &s->p[i]);
	}
	s->t_us = now;
	s->taken = 1;
}

static uint64_t
rss_sum(const report *R, const sample *s)
{
	uint64_t t = 0;
	uint32_t i;

	for (i = 0; i < R->nrss_pids; i++) {
		t += s->p[i].rss_kb;
	}
	return t;
}

static double
cpu_pct(const sample *a, const sample *b, uint32_t i)
{
	double secs;

	if (!a->taken || !b->taken || b->t_us <= a->t_us || !a->p[i].ok ||
	    !b->p[i].ok) {
		return -1;
	}
	secs = (double)(b->t_us - a->t_us) / 1e6;
	return 100.0 * (double)(b->p[i].cpu_ticks - a->p[i].cpu_ticks) /
	       (double)sysconf(_SC_CLK_TCK) / secs;
}

/* Share of the interval the process waited for a CPU while runnable. */
static double
runq_pct(const sample *a, const sample *b, uint32_t i)
{
	if (!a->taken || !b->taken || b->t_us <= a->t_us || !a->p[i].ok ||
	    !b->p[i].ok) {
		return -1;
	}
	return 100.0 * (double)(b->p[i].wait_ns - a->p[i].wait_ns) / 1e3 /
	       (double)(b->t_us - a->t_us);
}

static int
read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t k = read(fd, p, n);

		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int
write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static void
merge(imb_result *d, const imb_result *s)
{
	unsigned i;

	for (i = 0; i < IMB_C_COUNT; i++) {
		d->c[i] += s->c[i];
	}
	for (i = 0; i < IMB_CODES; i++) {
		d->err_code[i] += s->err_code[i];
	}
	imb_hist_merge(&d->ack, &s->ack);
	imb_hist_merge(&d->deliver, &s->deliver);
	imb_hist_merge(&d->login, &s->login);
	imb_hist_merge(&d->resume, &s->resume);
	imb_hist_merge(&d->catchup, &s->catchup);
#define MAXF(f)                                                                \
	if (s->f > d->f)                                                       \
	d->f = s->f
	MAXF(t_login_last);
	MAXF(t_resume_last);
	MAXF(t_caught_last);
	MAXF(t_setup_end);
#undef MAXF
	if (d->t_login_first == 0 ||
	    (s->t_login_first && s->t_login_first < d->t_login_first)) {
		d->t_login_first = s->t_login_first;
	}
	d->cpu_us_win += s->cpu_us_win;
	d->cpu_us_total += s->cpu_us_total;
	d->connections += s->connections;
}

static const char *phase_names[IMB_P_COUNT] = {
        "setup", "login", "run", "drain", "drop", "resume", "done",
};

/* Watch the workers, sampling the server at the phase edges. */
static void
monitor(report *R, const imb_plan *p, pid_t *kids, uint32_t nkids)
{
	const imb_opts *o = R->o;
	imb_ctl *ctl = p->ctl;
	double limit_s = o->setup_timeout + 2 * o->login_timeout + o->warmup +
	                 o->duration + o->down + 4 * o->drain + 60;
	int seen = -1;
	uint32_t i;

	for (;;) {
		uint64_t now = imb_now_us(p);
		struct timespec ts = {0, 2000000};
		int st, ph;

		for (ph = IMB_P_COUNT - 1; ph >= 0; ph--) {
			if (__atomic_load_n(&ctl->go[ph], __ATOMIC_SEQ_CST) &&
			    now >= ctl->t0[ph]) {
				break;
			}
		}
		if (ph < 0) {
			ph = IMB_P_SETUP;
		}
		if (ph != seen) {
			seen = ph;
			if (!o->quiet) {
				fprintf(stderr, "im-bench: %.1fs %s\n",
				        (double)now / 1e6, phase_names[ph]);
			}
		}
		if (ph >= IMB_P_LOGIN && !R->s_login0.taken) {
			take(R, &R->s_login0, now);
		}
		if (__atomic_load_n(&ctl->arrived[IMB_P_LOGIN],
		                    __ATOMIC_SEQ_CST) == (int)o->procs &&
		    !R->s_login1.taken) {
			take(R, &R->s_login1, now);
		}
		if (ph >= IMB_P_RUN && ctl->t0[IMB_P_RUN]) {
			uint64_t w0 = ctl->t0[IMB_P_RUN] +
			              (uint64_t)(o->warmup * 1e6);
			uint64_t w1 = w0 + (uint64_t)(o->duration * 1e6);

			if (now >= w0 && !R->s_win0.taken) {
				take(R, &R->s_win0, now);
			}
			if (now >= w1 && !R->s_win1.taken) {
				take(R, &R->s_win1, now);
			}
			if (now >= w0 && now < w1 && now >= R->t_rss_next &&
			    R->npids > 0 && R->nrss < 3600) {
				sample s;

				take(R, &s, now);
				R->rss_series[R->nrss++] = rss_sum(R, &s);
				R->t_rss_next = now + 1000000;
			}
		}
		if (__atomic_load_n(&ctl->arrived[IMB_P_DONE],
		                    __ATOMIC_SEQ_CST) == (int)o->procs) {
			take(R, &R->s_end, now);
			break;
		}
		for (i = 0; i < nkids; i++) {
			if (kids[i] > 0 &&
			    waitpid(kids[i], &st, WNOHANG) == kids[i]) {
				kids[i] = -1;
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
					fprintf(stderr,
					        "im-bench: worker %u died\n",
					        i);
					R->crashed = 1;
					ctl->abort = 1;
				}
			}
		}
		if (R->crashed || (double)now / 1e6 > limit_s) {
			ctl->abort = 1;
			take(R, &R->s_end, now);
			break;
		}
		nanosleep(&ts, NULL);
	}
	for (i = 0; i < IMB_P_COUNT; i++) {
		R->t0[i] = ctl->t0[i];
	}
}

static void
derive(report *R)
{
	const imb_opts *o = R->o;
	const imb_result *r = &R->r;
	unsigned i;
	const sample *after;

	if (o->duration > 0) {
		R->acks_s = (double)r->c[IMB_C_ACKED_WIN] / o->duration;
		R->deliv_s = (double)r->c[IMB_C_DELIV_WIN] / o->duration;
	}
	if (R->have_base && R->base.rows_per_s > 0) {
		R->ratio = R->acks_s / R->base.rows_per_s;
	}
	if (r->t_login_last > r->t_login_first) {
		double s = (double)(r->t_login_last - r->t_login_first) / 1e6;

		R->login_all_ms = s * 1e3;
		R->login_s = (double)r->c[IMB_C_LOGINS] / s;
	}
	if (R->t0[IMB_P_RESUME] && r->t_resume_last > R->t0[IMB_P_RESUME]) {
		R->resume_all_ms =
		        (double)(r->t_resume_last - R->t0[IMB_P_RESUME]) / 1e3;
	}
	if (R->t0[IMB_P_RESUME] && r->t_caught_last > R->t0[IMB_P_RESUME]) {
		R->caught_all_ms =
		        (double)(r->t_caught_last - R->t0[IMB_P_RESUME]) / 1e3;
	}
	after = R->s_win0.taken ? &R->s_win0 : &R->s_login1;
	if (R->npids && R->s_login0.taken && after->taken &&
	    r->c[IMB_C_LOGINS] > 0) {
		R->rss_per_conn = ((double)rss_sum(R, after) -
		                   (double)rss_sum(R, &R->s_login0)) *
		                  1024.0 / (double)r->c[IMB_C_LOGINS];
	}
	R->unexpected = R->crashed;
	for (i = 0; i < IMB_C_COUNT; i++) {
		if (imb_cnt_is_error[i]) {
			R->unexpected += r->c[i];
		}
	}
	for (i = 1; i < IMB_CODES; i++) {
		R->unexpected += r->err_code[i];
	}
}

static void
hist_row(FILE *f, const char *name, const imb_hist *h)
{
	if (h->count == 0) {
		return;
	}
	fprintf(f, "  %-16s %9llu %9.2f %9.2f %9.2f %9.2f %9.2f\n", name,
	        (unsigned long long)h->count, imb_hist_pct(h, 50) / 1e3,
	        imb_hist_pct(h, 90) / 1e3, imb_hist_pct(h, 99) / 1e3,
	        imb_hist_pct(h, 99.9) / 1e3, h->max / 1e3);
}

static void
table(FILE *f, const report *R)
{
	const imb_opts *o = R->o;
	const imb_result *r = &R->r;
	unsigned i;

	fprintf(f,
	        "\n== im-bench %s: %u users, %u groups x %u, body %u B, "
	        "%s %g, %u procs ==\n",
	        o->scenario_name, o->users, o->groups, o->group_size, o->body,
	        o->rate > 0 ? "open loop rate" : "closed loop inflight",
	        o->rate > 0 ? o->rate : (double)o->inflight, o->procs);
	if (R->have_base) {
		fprintf(f,
		        "  baseline %s (batch %u): %.0f rows/s, "
		        "%.0f commits/s\n",
		        R->base.pg ? "PostgreSQL multi-row INSERT (autocommit)"
		                   : "sqlite insert (WAL, sync FULL)",
		        R->base.batch, R->base.rows_per_s,
		        R->base.commits_per_s);
	}
	if (o->senders > 0 && o->duration > 0) {
		fprintf(f, "  sends acked/s      %.0f", R->acks_s);
		if (R->have_base) {
			/* Open loop acks what it offers: only a closed loop's
			 * rate says what the server can do. */
			if (o->rate > 0) {
				fprintf(f, "   (open loop: the offered rate)");
			} else {
				fprintf(f, "   (%.1f%% of baseline)",
				        100 * R->ratio);
			}
		}
		fprintf(f, "\n  deliveries/s       %.0f\n", R->deliv_s);
	}
	if (r->c[IMB_C_GROUPS_MADE]) {
		fprintf(f,
		        "  setup              %llu groups, %llu AddMember in "
		        "%.1f s (%.0f groups/s)\n",
		        (unsigned long long)r->c[IMB_C_GROUPS_MADE],
		        (unsigned long long)r->c[IMB_C_MEMBERS_ADDED],
		        (double)r->t_setup_end / 1e6,
		        (double)r->c[IMB_C_GROUPS_MADE] /
		                ((double)r->t_setup_end / 1e6 + 1e-9));
	}
	fprintf(f,
	        "  logins             %llu in %.1f ms (%.0f/s), "
	        "connections %llu\n",
	        (unsigned long long)r->c[IMB_C_LOGINS], R->login_all_ms,
	        R->login_s, (unsigned long long)r->connections);
	if (o->scenario == IMB_SC_RECONNECT) {
		fprintf(f,
		        "  resume             %llu resumed (%llu in grace) "
		        "in %.1f ms; %llu caught up in %.1f ms, "
		        "%llu replayed\n",
		        (unsigned long long)r->c[IMB_C_RESUMED],
		        (unsigned long long)r->c[IMB_C_RESUMED_TRUE],
		        R->resume_all_ms,
		        (unsigned long long)r->c[IMB_C_CAUGHT_UP],
		        R->caught_all_ms,
		        (unsigned long long)r->c[IMB_C_REPLAYED]);
	}
	fprintf(f, "  latency ms         count       p50       p90       p99"
	           "     p99.9       max\n");
	hist_row(f, "send->ack", &r->ack);
	hist_row(f, "send->deliver", &r->deliver);
	hist_row(f, "login+convlist", &r->login);
	hist_row(f, "resume", &r->resume);
	hist_row(f, "catch-up", &r->catchup);
	for (i = 0; i < R->npids; i++) {
		const imb_proc *a = &R->s_login0.p[i];
		const imb_proc *b =
		        R->s_win0.taken ? &R->s_win0.p[i] : &R->s_login1.p[i];

		double cw = cpu_pct(&R->s_win0, &R->s_win1, i);
		double cl = cpu_pct(&R->s_login0, &R->s_login1, i);
		char w[16] = "n/a", l[16] = "n/a";

		if (cw >= 0) {
			snprintf(w, sizeof(w), "%.0f%%", cw);
		}
		if (cl >= 0) {
			snprintf(l, sizeof(l), "%.0f%%", cl);
		}
		double rq = runq_pct(&R->s_win0, &R->s_win1, i);
		char q[16] = "n/a";

		if (rq >= 0) {
			snprintf(q, sizeof(q), "%.0f%%", rq);
		}
		fprintf(f,
		        "  server pid %d%s: cpu %s (window, runq wait %s), %s "
		        "(login); rss %llu -> %llu KiB, peak %llu KiB\n",
		        R->pids[i], i < R->nrss_pids ? "" : " (other)", w, q, l,
		        (unsigned long long)a->rss_kb,
		        (unsigned long long)b->rss_kb,
		        (unsigned long long)R->s_end.p[i].hwm_kb);
	}
	if (R->npids > 1) {
		double tw = 0, tl = 0;

		for (i = 0; i < R->npids; i++) {
			double cw = cpu_pct(&R->s_win0, &R->s_win1, i);
			double cl = cpu_pct(&R->s_login0, &R->s_login1, i);

			tw += cw > 0 ? cw : 0;
			tl += cl > 0 ? cl : 0;
		}
		fprintf(f,
		        "  servers (%u) cpu   %.0f%% (window), %.0f%% (login), "
		        "of one core; rss %llu KiB in the first %u\n",
		        R->npids, tw, tl,
		        (unsigned long long)rss_sum(R, R->s_win0.taken
		                                               ? &R->s_win0
		                                               : &R->s_login1),
		        R->nrss_pids);
	}
	if (R->npids && R->rss_per_conn != 0) {
		fprintf(f, "  server rss/conn    %.0f bytes\n",
		        R->rss_per_conn);
	}
	if (R->nrss >= 2) {
		fprintf(f,
		        "  server rss window  %llu -> %llu KiB over %u s "
		        "(%+.1f KiB/s)\n",
		        (unsigned long long)R->rss_series[0],
		        (unsigned long long)R->rss_series[R->nrss - 1],
		        R->nrss - 1,
		        ((double)R->rss_series[R->nrss - 1] -
		         (double)R->rss_series[0]) /
		                (R->nrss - 1));
	}
	if (o->duration > 0 && R->r.cpu_us_win) {
		fprintf(f, "  bench cpu          %.0f%% in the window\n",
		        100.0 * (double)r->cpu_us_win / 1e6 / o->duration);
	}
	fprintf(f, "  counters:");
	for (i = 0; i < IMB_C_COUNT; i++) {
		if (r->c[i]) {
			fprintf(f, " %s=%llu%s", imb_cnt_names[i],
			        (unsigned long long)r->c[i],
			        imb_cnt_is_error[i] ? "(!)" : "");
		}
	}
	fprintf(f, "\n  replies by code:");
	for (i = 0; i < IMB_CODES; i++) {
		if (r->err_code[i]) {
			fprintf(f, " %s=%llu", code_names[i],
			        (unsigned long long)r->err_code[i]);
		}
	}
	fprintf(f, "\n  unexpected errors  %llu\n",
	        (unsigned long long)R->unexpected);
}

static void
json_hist(FILE *f, const char *name, const imb_hist *h, int comma)
{
	fprintf(f,
	        "    \"%s\": {\"count\": %llu, \"p50\": %llu, \"p90\": %llu,"
	        " \"p99\": %llu, \"p999\": %llu, \"max\": %llu}%s\n",
	        name, (unsigned long long)h->count,
	        (unsigned long long)imb_hist_pct(h, 50),
	        (unsigned long long)imb_hist_pct(h, 90),
	        (unsigned long long)imb_hist_pct(h, 99),
	        (unsigned long long)imb_hist_pct(h, 99.9),
	        (unsigned long long)h->max, comma ? "," : "");
}

static int
json(const char *path, const report *R)
{
	const imb_opts *o = R->o;
	const imb_result *r = &R->r;
	FILE *f = fopen(path, "w");
	unsigned i;

	if (f == NULL) {
		return -1;
	}
	fprintf(f, "{\n  \"scenario\": \"%s\",\n  \"command\": \"",
	        o->scenario_name);
	for (i = 0; i < (unsigned)R->argc; i++) {
		const char *a = R->argv[i];

		/* The secret stays out of result files. */
		if (i > 0 && strcmp(R->argv[i - 1], "--secret") == 0) {
			a = "...";
		} else if (strncmp(a, "--secret=", 9) == 0) {
			a = "--secret=...";
		}
		for (; *a; a++) {
			if (*a == '"' || *a == '\\') {
				fputc('\\', f);
			}
			if ((unsigned char)*a >= 0x20) {
				fputc(*a, f);
			}
		}
		fputc(i + 1 < (unsigned)R->argc ? ' ' : '"', f);
	}
	fprintf(f, ",\n");
	fprintf(f,
	        "  \"config\": {\"users\": %u, \"groups\": %u, "
	        "\"group_size\": %u, \"convs\": %u, \"senders\": %u, "
	        "\"body\": %u, \"inflight\": %u, \"rate\": %g, "
	        "\"duration_s\": %g, \"warmup_s\": %g, \"login_rate\": %g, "
	        "\"procs\": %u, \"src_addrs\": %u, \"targets\": %u},\n",
	        o->users, o->groups, o->group_size, o->convs, o->senders,
	        o->body, o->rate > 0 ? 0 : o->inflight, o->rate, o->duration,
	        o->warmup, o->login_rate, o->procs, o->nsrc, o->ntargets);
	if (R->have_base) {
		fprintf(f,
		        "  \"baseline\": {\"store\": \"%s\", "
		        "\"rows_per_s\": %.1f, "
		        "\"commits_per_s\": %.1f, \"batch\": %u, "
		        "\"secs\": %.2f},\n",
		        R->base.pg ? "pg" : "sqlite", R->base.rows_per_s,
		        R->base.commits_per_s, R->base.batch, R->base.secs);
	}
	fprintf(f, "  \"sends_acked_per_s\": %.1f,\n", R->acks_s);
	fprintf(f, "  \"deliveries_per_s\": %.1f,\n", R->deliv_s);
	fprintf(f, "  \"ratio_to_baseline\": %.4f,\n", R->ratio);
	fprintf(f, "  \"closed_loop\": %s,\n", o->rate > 0 ? "false" : "true");
	fprintf(f,
	        "  \"logins\": %llu,\n  \"login_all_ms\": %.1f,\n"
	        "  \"logins_per_s\": %.1f,\n",
	        (unsigned long long)r->c[IMB_C_LOGINS], R->login_all_ms,
	        R->login_s);
	fprintf(f, "  \"connections\": %llu,\n",
	        (unsigned long long)r->connections);
	fprintf(f, "  \"setup_s\": %.2f,\n", (double)r->t_setup_end / 1e6);
	fprintf(f,
	        "  \"resume_all_ms\": %.1f,\n  \"caught_up_all_ms\": %.1f,\n",
	        R->resume_all_ms, R->caught_all_ms);
	fprintf(f, "  \"latency_us\": {\n");
	json_hist(f, "send_ack", &r->ack, 1);
	json_hist(f, "send_deliver", &r->deliver, 1);
	json_hist(f, "login", &r->login, 1);
	json_hist(f, "resume", &r->resume, 1);
	json_hist(f, "catchup", &r->catchup, 0);
	fprintf(f, "  },\n  \"counters\": {");
	for (i = 0; i < IMB_C_COUNT; i++) {
		fprintf(f, "%s\"%s\": %llu", i ? ", " : "", imb_cnt_names[i],
		        (unsigned long long)r->c[i]);
	}
	fprintf(f, "},\n  \"replies_by_code\": {");
	for (i = 0; i < IMB_CODES; i++) {
		fprintf(f, "%s\"%s\": %llu", i ? ", " : "", code_names[i],
		        (unsigned long long)r->err_code[i]);
	}
	fprintf(f, "},\n  \"unexpected_errors\": %llu,\n",
	        (unsigned long long)R->unexpected);
	fprintf(f, "  \"server\": [");
	for (i = 0; i < R->npids; i++) {
		const imb_proc *a = &R->s_login0.p[i];
		const imb_proc *b =
		        R->s_win0.taken ? &R->s_win0.p[i] : &R->s_login1.p[i];

		fprintf(f,
		        "%s{\"pid\": %d, \"counts_per_conn\": %s, "
		        "\"cpu_pct_window\": %.1f, "
		        "\"cpu_pct_login\": %.1f, \"runq_wait_pct_window\": "
		        "%.1f, "
		        "\"rss_kb_before_login\": "
		        "%llu, \"rss_kb_after_login\": %llu, "
		        "\"rss_kb_end\": %llu, \"hwm_kb\": %llu}",
		        i ? ", " : "", R->pids[i],
		        i < R->nrss_pids ? "true" : "false",
		        cpu_pct(&R->s_win0, &R->s_win1, i),
		        cpu_pct(&R->s_login0, &R->s_login1, i),
		        runq_pct(&R->s_win0, &R->s_win1, i),
		        (unsigned long long)a->rss_kb,
		        (unsigned long long)b->rss_kb,
		        (unsigned long long)R->s_end.p[i].rss_kb,
		        (unsigned long long)R->s_end.p[i].hwm_kb);
	}
	fprintf(f, "],\n  \"server_rss_bytes_per_conn\": %.1f,\n",
	        R->rss_per_conn);
	fprintf(f, "  \"server_rss_kb_per_s_in_window\": [");
	for (i = 0; i < R->nrss; i++) {
		fprintf(f, "%s%llu", i ? ", " : "",
		        (unsigned long long)R->rss_series[i]);
	}
	fprintf(f, "],\n");
	fprintf(f, "  \"bench_cpu_pct_window\": %.1f\n}\n",
	        o->duration > 0
	                ? 100.0 * (double)r->cpu_us_win / 1e6 / o->duration
	                : 0.0);
	return fclose(f) == 0 ? 0 : -1;
}

static void *
shared(size_t n)
{
	void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int
main(int argc, char **argv)
{
	static imb_opts o;
	static report R;
	imb_plan p = {0};
	char err[256];
	int help, fds[64][2];
	pid_t kids[64];
	uint32_t i;
	struct timespec ts;

	if (imb_opts_parse(&o, argc, argv, &help, err, sizeof(err)) != 0) {
		fprintf(stderr, "im-bench: %s\n", err);
		imb_opts_usage(stderr);
		return 2;
	}
	if (help) {
		imb_opts_usage(stdout);
		return 0;
	}
	if (imb_opts_finish(&o, err, sizeof(err)) != 0) {
		fprintf(stderr, "im-bench: %s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	R.o = &o;
	R.argc = argc;
	R.argv = argv;
	if (o.nserver_pids) {
		memcpy(R.pids, o.server_pids, sizeof(int) * o.nserver_pids);
		R.npids = o.nserver_pids;
	} else if (o.server_name && *o.server_name) {
		R.npids = imb_proc_find(o.server_name, R.pids,
		                        IMB_MAX_SERVER_PIDS);
	}
	R.nrss_pids = R.npids;
	memcpy(R.pids + R.npids, o.other_pids, sizeof(int) * o.nother_pids);
	R.npids += o.nother_pids;
	if (o.baseline) {
		if (!o.quiet) {
			fprintf(stderr, "im-bench: baseline %.0fs, batch %u\n",
			        o.baseline_secs, o.baseline_batch);
		}
		if (imb_baseline_run(&o, &R.base) != 0) {
			fprintf(stderr, "im-bench: baseline failed: %s\n",
			        R.base.err);
		} else {
			R.have_base = 1;
		}
	}
	if (imb_plan_build(&p, &o) != 0) {
		fprintf(stderr, "im-bench: out of memory for the plan\n");
		return 1;
	}
	p.ctl = shared(sizeof(imb_ctl));
	p.gids = shared(sizeof(uint64_t) * o.groups);
	p.target = shared(sizeof(uint64_t) * o.groups);
	if (p.ctl == NULL || p.gids == NULL || p.target == NULL) {
		fprintf(stderr, "im-bench: mmap failed\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	p.epoch_ns = (uint64_t)ts.tv_sec * 1000000000ull +
	             (uint64_t)ts.tv_nsec - 1000000; /* t_us never 0 */
	clock_gettime(CLOCK_REALTIME, &ts);
	p.nonce = ((uint64_t)ts.tv_sec ^ (uint64_t)ts.tv_nsec ^
	           ((uint64_t)getpid() << 16)) &
	          0x7fffffffu;
	fflush(NULL);
	for (i = 0; i < o.procs; i++) {
		if (pipe(fds[i]) != 0) {
			perror("pipe");
			return 1;
		}
		kids[i] = fork();
		if (kids[i] < 0) {
			perror("fork");
			p.ctl->abort = 1;
			return 1;
		}
		if (kids[i] == 0) {
			static imb_result r;
			uint32_t j;
			int rc;

			for (j = 0; j <= i; j++) {
				close(fds[j][0]);
			}
			rc = imb_worker_run(&p, i, &r);
			if (write_full(fds[i][1], &r, sizeof(r)) != 0) {
				rc = -1;
			}
			_exit(rc == 0 ? 0 : 1);
		}
		close(fds[i][1]);
	}
	monitor(&R, &p, kids, o.procs);
	imb_hist_init(&R.r.ack);
	imb_hist_init(&R.r.deliver);
	imb_hist_init(&R.r.login);
	imb_hist_init(&R.r.resume);
	imb_hist_init(&R.r.catchup);
	for (i = 0; i < o.procs; i++) {
		static imb_result r;

		if (read_full(fds[i][0], &r, sizeof(r)) != 0) {
			fprintf(stderr, "im-bench: no result from worker %u\n",
			        i);
			R.crashed = 1;
		} else {
			merge(&R.r, &r);
		}
		close(fds[i][0]);
		if (kids[i] > 0) {
			waitpid(kids[i], NULL, 0);
		}
	}
	derive(&R);
	table(stdout, &R);
	free(p.uoff);
	free(p.ulist);
	if (o.json && json(o.json, &R) != 0) {
		fprintf(stderr, "im-bench: cannot write %s\n", o.json);
		return 1;
	}
	if (R.unexpected > 0) {
		return 1;
	}
	if (o.senders > 0 && o.duration > 0 && R.r.c[IMB_C_ACKED] == 0) {
		fprintf(stderr, "im-bench: no send was acked\n");
		return 1;
	}
	return 0;
}
