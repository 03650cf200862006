/* spindle-img rebase (being written) */
#include "img.h"

int img_rebase(int argc, char **argv)
{
    img_error("rebase is not implemented yet");
    return 1;
}
