/*
 * spindle-img: qemu-img's command line over spindle's block layer.  One
 * file per subcommand; this header holds what they share.
 */
#ifndef SPINDLE_TOOLS_IMG_H
#define SPINDLE_TOOLS_IMG_H

#include <getopt.h>
#include <stdio.h>

#include "block/backend.h"
#include "block/driver.h"
#include "block/image.h"
#include "util/error.h"
#include "util/aio.h"
#include "util/log.h"

#define SPINDLE_IMG_VERSION "0.1 (qemu-img compatible)"

/* Print "spindle-img: <message>" on stderr. */
void img_error(const char *fmt, ...) PRINTF_FMT(1, 2);

/*
 * qemu-img's usage errors: the message, then "Try 'spindle-img --help' for
 * more information".  Returns 1, the exit code.
 */
int img_usage_error(const char *fmt, ...) PRINTF_FMT(1, 2);

/* getopt's ':' (missing argument) and '?' (unknown option) in qemu-img's words; returns 1. */
int img_bad_option(int c, char **argv);

/* The whole help, which every subcommand's -h/--help prints too; returns 0. */
int img_help(void);

/* --output=human|json: 0, or -EINVAL after qemu-img's message. */
int img_parse_output(const char *arg, bool *json);

/*
 * A size argument between min and max, as qemu-img's cvtnum reports a bad
 * one: "Invalid <what> specified. ...".  0 or -errno after the message.
 */
int img_cvtnum(const char *what, const char *arg, int64_t min, int64_t max, int64_t *out);

/* Parse a size argument the way qemu-img does (suffixes k, M, G, T, P, E). */
int img_parse_size(const char *arg, int64_t *out);

/* Append one -o argument to *options (several -o accumulate); -EINVAL after the message. */
int img_add_options(char **options, const char *arg);
/* The type of an option as "-o help" shows it: "bool (on/off)", "num", "size", "str". */
const char *img_opt_type_name(enum bdrv_opt_type t);
/* Whether an -o list asks for help ("help" or "?"). */
bool img_is_help_option(const char *options);

/*
 * Print v as qemu-img prints JSON (four-space indent, empty arrays and
 * objects open on one line and close on the next), then a newline.
 */
void img_print_json(json_t *v);

/* Open an image for a subcommand; prints "Could not open '<name>': <why>" itself. */
struct block_backend *img_open(const struct image_open *o);
/* The why of a failed open: the block layer's sentence without a leading "<filename>: ". */
const char *img_open_reason(const char *filename, const char *msg);

/*
 * Compare two buffers in 512-byte sectors: whether the first sector
 * differs, and in *pnum how many bytes from the start share that answer.
 */
int img_compare_buffers(const uint8_t *a, const uint8_t *b, int64_t bytes, int64_t *pnum);

/*
 * A progress bar on stdout, shown only when enabled and stdout is a
 * terminal: "    (12.34/100%)\r".
 */
struct img_progress {
    bool enabled;
    double last;
};
void img_progress_init(struct img_progress *p, bool requested);
void img_progress_update(struct img_progress *p, double fraction);
void img_progress_end(struct img_progress *p);

int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_check(int argc, char **argv);
int img_map(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_amend(int argc, char **argv);
int img_bitmap(int argc, char **argv);
int img_dd(int argc, char **argv);

/*
 * Internal snapshots (snapshot.c): the "snapshots" array of info's JSON for
 * bs (NULL when it has none or its format cannot have any), and
 * qemu-img's table of it ("Snapshot list:" and a line per snapshot) that
 * snapshot -l and info print.
 */
json_t *img_snapshots_json(struct block_node *bs);
void img_print_snapshot_table(json_t *snapshots);

#endif
