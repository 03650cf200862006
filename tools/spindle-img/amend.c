/* spindle-img amend (being written) */
#include "img.h"

int img_amend(int argc, char **argv)
{
    img_error("amend is not implemented yet");
    return 1;
}
