/* What block jobs share; see block-job.h. */
#include "blockjobs/block-job.h"

#include "block/driver.h"
#include "util/log.h"

static int find_backend_name(struct block_backend *blk, void *opaque)
{
    const char **name = opaque;
    struct block_node *bs = (struct block_node *)name[1];
    if (blk_node(blk) == bs && blk_name(blk)[0]) {
        name[0] = blk_name(blk);
        return 1;
    }
    return 0;
}

const char *block_job_device_name(struct block_node *bs)
{
    const char *found[2] = { NULL, (const char *)bs };
    blk_foreach(find_backend_name, found);
    return found[0] ? found[0] : bs->node_name;
}

struct block_job *block_job_create(const struct job_driver *driver, const char *id,
                                   struct block_node *bs, int64_t speed, bool auto_finalize,
                                   bool auto_dismiss, struct err *err)
{
    const char *device = block_job_device_name(bs);
    if (!id) {
        id = device;
    }
    if (block_job_using(bs)) {
        err_set(err, "Node '%s' is busy: block device is in use by block job: %s",
                bs->node_name, block_job_using(bs)->job.driver->type);
        return NULL;
    }
    if (speed < 0) {
        err_set(err, "Parameter 'speed' expects a non-negative value");
        return NULL;
    }
    struct block_job *bj = (struct block_job *)job_create(driver, id, auto_finalize,
                                                          auto_dismiss, err);
    if (!bj) {
        return NULL;
    }
    bj->bs = bs;
    bnode_ref(bs);
    bj->device = xstrdup(device);
    bj->job.speed = (uint64_t)speed;
    return bj;
}

void block_job_release(struct block_job *bj)
{
    bnode_unref(bj->bs);
    bj->bs = NULL;
    free(bj->device);
    bj->device = NULL;
}

struct block_backend *block_job_backend(struct block_job *bj, struct block_node *bs,
                                        bool writable, struct err *err)
{
    if (writable && bs->read_only) {
        err_set(err, "Node '%s' is read-only", bs->node_name);
        return NULL;
    }
    struct block_backend *blk = blk_new("");
    if (blk_insert_node(blk, bs, err) < 0) {
        blk_unref(blk);
        return NULL;
    }
    blk_set_disable_request_queuing(blk, true);
    blk_set_allow_write_beyond_eof(blk, true);
    return blk;
}

struct block_job_search {
    struct block_node *bs;
    struct block_job *found;
};

static int job_uses(struct job *job, void *opaque)
{
    struct block_job_search *s = opaque;
    struct block_job *bj = (struct block_job *)job;
    if (job->status != JOB_STATUS_CONCLUDED && job->status != JOB_STATUS_NULL &&
        bj->bs == s->bs) {
        s->found = bj;
        return 1;
    }
    return 0;
}

struct block_job *block_job_using(struct block_node *bs)
{
    struct block_job_search s = { bs, NULL };
    job_foreach(job_uses, &s);
    return s.found;
}

json_t *block_job_query(struct block_job *bj)
{
    struct job *job = &bj->job;
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(job->driver->type));
    json_object_set_new(o, "device", json_string(job->id));
    json_object_set_new(o, "len", json_integer((json_int_t)job->progress_total));
    json_object_set_new(o, "offset", json_integer((json_int_t)job->progress_current));
    json_object_set_new(o, "busy", json_boolean(job->busy));
    json_object_set_new(o, "paused", json_boolean(job->pause_count > 0));
    json_object_set_new(o, "speed", json_integer((json_int_t)job->speed));
    json_object_set_new(o, "io-status", json_string(job->user_paused && job->error ? "failed"
                                                                                  : "ok"));
    json_object_set_new(o, "ready", json_boolean(job_is_ready(job)));
    json_object_set_new(o, "status", json_string(job_status_name(job->status)));
    json_object_set_new(o, "auto-finalize", json_boolean(job->auto_finalize));
    json_object_set_new(o, "auto-dismiss", json_boolean(job->auto_dismiss));
    if (job->error) {
        json_object_set_new(o, "error", json_string(job->error));
    }
    if (job->driver->query) {
        job->driver->query(job, o);
    }
    return o;
}
