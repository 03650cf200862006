/* spindle-img resize (being written) */
#include "img.h"

int img_resize(int argc, char **argv)
{
    img_error("resize is not implemented yet");
    return 1;
}
