/* im-bench internals: the plan every process shares, the phase barrier in
 * shared memory, and the results a worker sends back over its pipe. */
#ifndef IMB_IMBENCH_H
#define IMB_IMBENCH_H

#include <stdint.h>

#include "hist.h"
#include "opts.h"

/* Phases every worker goes through in step (a barrier between each). */
enum {
	IMB_P_SETUP = 0, /* create the groups through the protocol */
	IMB_P_LOGIN,     /* every user connects and logs in */
	IMB_P_RUN,       /* warm-up then the measured window */
	IMB_P_DRAIN,     /* stop sending, wait for outstanding replies */
	IMB_P_DROP,      /* reconnect: droppers away, stayers send */
	IMB_P_RESUME,    /* reconnect: droppers Resume and catch up */
	IMB_P_DONE,
	IMB_P_COUNT
};

/* Shared (MAP_SHARED) between the parent and the workers. */
typedef struct imb_ctl {
	int arrived[IMB_P_COUNT];
	int go[IMB_P_COUNT];
	uint64_t t0[IMB_P_COUNT]; /* us since the epoch the phase starts */
	int abort;
} imb_ctl;

/* The plan: who is in which group. Built before fork, read-only after;
 * gids and targets live in shared memory and are filled during the run. */
typedef struct imb_plan {
	const imb_opts *o;
	uint64_t epoch_ns; /* CLOCK_MONOTONIC origin of every t_us */
	uint64_t nonce;    /* per run, keeps dedup ids unique across runs */
	uint32_t *uoff;    /* users+1: user i's groups are ulist[uoff[i]..] */
	uint32_t *ulist;   /* group indices, ascending */
	uint64_t *gids;    /* shared: group index -> gid (0 = not created) */
	uint64_t *target;  /* shared: group index -> highest acked seq */
	imb_ctl *ctl;      /* shared */
} imb_plan;

/* Error/event counters; the names are in imb_cnt_names. */
enum {
	IMB_C_SENT = 0,      /* Send frames written */
	IMB_C_ACKED,         /* SendAck received (all phases) */
	IMB_C_ACKED_WIN,     /* SendAck received in the measured window */
	IMB_C_DUP_ACKS,      /* SendAck with dup = true */
	IMB_C_DELIV,         /* Deliver received (all phases) */
	IMB_C_DELIV_WIN,     /* Deliver received in the measured window */
	IMB_C_DELIV_DUP,     /* Deliver with seq <= last seen (dropped) */
	IMB_C_DELIV_GAP,     /* Deliver whose prev_seq != last seen */
	IMB_C_EVENTS,        /* UserEvent received */
	IMB_C_LOGINS,        /* logins completed with the full conv list */
	IMB_C_CONVS,         /* ConvInfo received */
	IMB_C_CONV_MISMATCH, /* conv_count or ConvInfos != groups of user */
	IMB_C_GROUPS_MADE,   /* GroupCreated received */
	IMB_C_MEMBERS_ADDED, /* AddMember answered OK */
	IMB_C_RESUMED,       /* ResumeOk received */
	IMB_C_RESUMED_TRUE,  /* ... with resumed = true */
	IMB_C_CAUGHT_UP,     /* droppers that got every missed message */
	IMB_C_REPLAYED,      /* Deliver received in the resume phase */
	IMB_C_CONNECT_FAIL,  /* socket/bind/connect failed */
	IMB_C_CLOSED,        /* connection closed by the server unasked */
	IMB_C_PROTO,         /* undecodable frame or unexpected reply */
	IMB_C_WBUF_FULL,     /* client side write backlog over its bound */
	IMB_C_LOGIN_TIMEOUT, /* users not logged in by --login-timeout */
	IMB_C_SETUP_FAIL,    /* groups not created */
	IMB_C_DRAIN_LEFT,    /* replies still outstanding after --drain */
	IMB_C_NOT_CAUGHT_UP, /* droppers still behind at the timeout */
	IMB_C_OPEN_BEHIND,   /* open loop: sends issued > 10 ms late */
	IMB_C_REDIRECTS,     /* Redirect followed (cluster: not the owner) */
	IMB_C_BAD_REDIRECT,  /* Redirect unparsable, off loopback, or a loop */
	IMB_C_TLS_FAIL,      /* --tls: handshake or TLS read/write failed */
	IMB_C_COUNT
};
extern const char *const imb_cnt_names[IMB_C_COUNT];
/* Counters that are errors when nonzero (the smoke test fails on them). */
extern const unsigned char imb_cnt_is_error[IMB_C_COUNT];

#define IMB_CODES 16 /* Error.code 0..14, 15 = anything larger */

typedef struct imb_result {
	uint64_t c[IMB_C_COUNT];
	uint64_t err_code[IMB_CODES]; /* Error frames by code (0 = OK) */
	imb_hist ack;     /* send -> SendAck, us, from the intended send time */
	imb_hist deliver; /* send -> Deliver, us, every recipient incl. self */
	imb_hist login;   /* connect -> last ConvPage, us */
	imb_hist resume;  /* Resume sent -> ResumeOk, us */
	imb_hist catchup; /* resume phase start -> caught up, us */
	uint64_t t_login_first; /* us: first connect of the login phase */
	uint64_t t_login_last;  /* us: last login completed */
	uint64_t t_resume_last; /* us: last ResumeOk */
	uint64_t t_caught_last; /* us: last dropper caught up */
	uint64_t t_setup_end;   /* us */
	uint64_t cpu_us_win;    /* this worker's CPU in the window */
	uint64_t cpu_us_total;
	uint64_t connections; /* logged-in connections at the peak */
} imb_result;

/* Run worker w of the plan; fills r. 0 ok. */
int imb_worker_run(const imb_plan *p, uint32_t w, imb_result *r);

/* CLOCK_MONOTONIC in us since the plan's epoch. */
uint64_t imb_now_us(const imb_plan *p);

/* Is user index i a sender / a stayer (reconnect)? */
int imb_is_sender(const imb_opts *o, uint32_t i);
int imb_is_stayer(const imb_opts *o, uint32_t i);
/* Users [first, end) of worker w. */
void imb_worker_users(const imb_opts *o, uint32_t w, uint32_t *first,
                      uint32_t *end);
/* Member j of group g (user index). */
uint32_t imb_member(const imb_opts *o, uint32_t g, uint32_t j);

/* Build uoff/ulist (malloc'd). 0 ok. */
int imb_plan_build(imb_plan *p, const imb_opts *o);

/* token.c: "<uid>.<expiry>.<hex hmac>" into buf (>= 128 bytes). */
int imb_token(char *buf, size_t len, const char *secret, uint64_t uid,
              uint64_t expiry_s);

/* baseline.c: raw insert rate of the same rows, into sqlite or (with
 * --baseline-pg) PostgreSQL. */
typedef struct imb_baseline {
	double rows_per_s;
	double commits_per_s;
	uint64_t rows;
	uint32_t batch;
	double secs;
	int pg; /* measured on PostgreSQL (--baseline-pg), else sqlite */
	char err[200];
} imb_baseline;
int imb_baseline_run(const imb_opts *o, imb_baseline *b);

/* procstat.c: a server process sample. */
typedef struct imb_proc {
	int pid;
	uint64_t cpu_ticks; /* utime + stime */
	uint64_t rss_kb;
	uint64_t hwm_kb;
	uint64_t run_ns;  /* /proc/PID/schedstat: on a CPU */
	uint64_t wait_ns; /* runnable, waiting for a CPU */
	int ok;
} imb_proc;
int imb_proc_sample(int pid, imb_proc *out);
/* Pids whose comm equals name (at most max). */
uint32_t imb_proc_find(const char *name, int *pids, uint32_t max);

#endif
