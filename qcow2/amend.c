/*
 * Amend (changing creation options of an existing image) and measure.
 */
#include "qcow2/qcow2-int.h"

int qcow2_amend(struct block_node *bs, json_t *options, bool force, struct err *err)
{
    err_set(err, "amend is not implemented yet");
    return -ENOTSUP;
}

int qcow2_measure(json_t *opts, struct block_node *in_bs, struct qcow2_measure *out,
                  struct err *err)
{
    err_set(err, "measure is not implemented yet");
    return -ENOTSUP;
}
