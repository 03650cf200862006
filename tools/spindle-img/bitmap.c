/* spindle-img bitmap (being written) */
#include "img.h"

int img_bitmap(int argc, char **argv)
{
    img_error("bitmap is not implemented yet");
    return 1;
}
