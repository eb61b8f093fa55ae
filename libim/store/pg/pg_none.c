/* Built when libim is configured without libpq (-Dpg=disabled). */
#include "im/sys/store.h"

#include <stdio.h>

int
im_store_pg_open(im_store **out, const char *conninfo,
                 const im_store_pg_opts *opts, char *errbuf, size_t errlen)
{
	(void)conninfo;
	(void)opts;
	if (out != NULL) {
		*out = NULL;
	}
	if (errbuf != NULL && errlen > 0) {
		snprintf(errbuf, errlen, "pg: libim was built without libpq");
	}
	return IM_ENOTSUP;
}
