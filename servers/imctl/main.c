/* imctl: see imctl.h. */
#include "imctl.h"

int
main(int argc, char **argv)
{
	return imctl_main(argc, argv, stdout, stderr);
}
