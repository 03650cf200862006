/* spindle-img dd (being written) */
#include "img.h"

int img_dd(int argc, char **argv)
{
    img_error("dd is not implemented yet");
    return 1;
}
