/*
 * A log-bucketed latency histogram in the manner of HdrHistogram: values
 * (microseconds) fall into power-of-two ranges split into 32 linear
 * sub-buckets, so every bucket is at most ~3% wide, the memory is fixed
 * (no samples are stored) and two histograms merge by adding counts, which
 * is how worker processes combine their results.
 */
#ifndef IMB_HIST_H
#define IMB_HIST_H

#include <stdint.h>

#define IMB_HIST_SUB_BITS 5
#define IMB_HIST_SUB (1u << IMB_HIST_SUB_BITS)
/* Values up to 2^40 us (12 days) are tracked; larger ones are clamped. */
#define IMB_HIST_MAX_BITS 40
#define IMB_HIST_BUCKETS                                                       \
	((IMB_HIST_MAX_BITS - IMB_HIST_SUB_BITS + 1) * IMB_HIST_SUB +          \
	 IMB_HIST_SUB)

typedef struct imb_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t sum;
	uint64_t b[IMB_HIST_BUCKETS];
} imb_hist;

void imb_hist_init(imb_hist *h);
void imb_hist_add(imb_hist *h, uint64_t v);
/* Add every count of src into dst. */
void imb_hist_merge(imb_hist *dst, const imb_hist *src);
/* The value at percentile p (0..100]: the highest value equivalent to the
 * bucket holding it, capped at the exact max. 0 when empty. */
uint64_t imb_hist_pct(const imb_hist *h, double p);

/* Bucket index of v and the inclusive value range of a bucket (tests). */
unsigned imb_hist_index(uint64_t v);
uint64_t imb_hist_low(unsigned idx);
uint64_t imb_hist_high(unsigned idx);

#endif
