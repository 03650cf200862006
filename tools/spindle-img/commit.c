/* spindle-img commit (being written) */
#include "img.h"

int img_commit(int argc, char **argv)
{
    img_error("commit is not implemented yet");
    return 1;
}
