#include "im/im.h"

const char *
im_strerror(int err)
{
	switch (err) {
	case IM_OK: return "IM_OK: success";
	case IM_ERR: return "IM_ERR: unexpected failure";
	case IM_ENOMEM: return "IM_ENOMEM: out of memory";
	case IM_EINVAL: return "IM_EINVAL: invalid argument";
	case IM_ENOTFOUND: return "IM_ENOTFOUND: not found";
	case IM_EFULL: return "IM_EFULL: a bound was reached";
	case IM_ESTALE: return "IM_ESTALE: slot epoch is stale (fenced)";
	case IM_ECONFLICT: return "IM_ECONFLICT: compare-and-set lost";
	case IM_EUNAVAIL: return "IM_EUNAVAIL: outcome unknown, retry";
	case IM_ESCHEMA: return "IM_ESCHEMA: store schema is newer than this build";
	case IM_ENOTSUP: return "IM_ENOTSUP: not supported";
	case IM_EPROTO: return "IM_EPROTO: protocol error";
	case IM_ETOOBIG: return "IM_ETOOBIG: size limit exceeded";
	case IM_EAGAIN: return "IM_EAGAIN: not ready, try again";
	case IM_EPERM: return "IM_EPERM: not allowed";
	case IM_ENOSPC: return "IM_ENOSPC: store full (no space left)";
	default: return "unknown libim error";
	}
}
