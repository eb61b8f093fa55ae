#include "hist.h"

#include <string.h>

void
imb_hist_init(imb_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned
imb_hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v >= (1ull << IMB_HIST_MAX_BITS)) {
		v = (1ull << IMB_HIST_MAX_BITS) - 1;
	}
	if (v < 2 * IMB_HIST_SUB) {
		return (unsigned)v;
	}
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - IMB_HIST_SUB_BITS;
	/* v >> shift lies in [SUB, 2*SUB): one of the SUB sub-buckets of the
	 * power-of-two range [2^msb, 2^(msb+1)). */
	return (shift + 1) * IMB_HIST_SUB +
	       (unsigned)((v >> shift) - IMB_HIST_SUB);
}

uint64_t
imb_hist_low(unsigned idx)
{
	unsigned shift;

	if (idx < 2 * IMB_HIST_SUB) {
		return idx;
	}
	shift = idx / IMB_HIST_SUB - 1;
	return (uint64_t)(idx % IMB_HIST_SUB + IMB_HIST_SUB) << shift;
}

uint64_t
imb_hist_high(unsigned idx)
{
	unsigned shift;

	if (idx < 2 * IMB_HIST_SUB) {
		return idx;
	}
	shift = idx / IMB_HIST_SUB - 1;
	return ((uint64_t)(idx % IMB_HIST_SUB + IMB_HIST_SUB + 1) << shift) - 1;
}

void
imb_hist_add(imb_hist *h, uint64_t v)
{
	h->b[imb_hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min) {
		h->min = v;
	}
	if (v > h->max) {
		h->max = v;
	}
}

void
imb_hist_merge(imb_hist *dst, const imb_hist *src)
{
	unsigned i;

	for (i = 0; i < IMB_HIST_BUCKETS; i++) {
		dst->b[i] += src->b[i];
	}
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min) {
		dst->min = src->min;
	}
	if (src->max > dst->max) {
		dst->max = src->max;
	}
}

uint64_t
imb_hist_pct(const imb_hist *h, double p)
{
	uint64_t want, seen = 0, v;
	unsigned i;

	if (h->count == 0) {
		return 0;
	}
	if (p >= 100.0) {
		return h->max;
	}
	want = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
	if (want == 0) {
		want = 1;
	}
	for (i = 0; i < IMB_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			v = imb_hist_high(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}
