/* spindle-img measure (being written) */
#include "img.h"

int img_measure(int argc, char **argv)
{
    img_error("measure is not implemented yet");
    return 1;
}
