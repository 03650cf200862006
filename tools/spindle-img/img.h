/*
 * spindle-img: qemu-img's command line over spindle's block layer.  One
 * file per subcommand; this header holds what they share.
 */
#ifndef SPINDLE_TOOLS_IMG_H
#define SPINDLE_TOOLS_IMG_H

#include <getopt.h>
#include <stdio.h>

#include "block/backend.h"
#include "block/image.h"
#include "util/error.h"
#include "util/aio.h"
#include "util/log.h"

/* Print "spindle-img: <message>" on stderr. */
void img_error(const char *fmt, ...) PRINTF_FMT(1, 2);

/* Parse a size argument the way qemu-img does (suffixes k, M, G, T, P, E). */
int img_parse_size(const char *arg, int64_t *out);

/*
 * Print v as qemu-img prints JSON (four-space indent, empty arrays and
 * objects open on one line and close on the next), then a newline.
 */
void img_print_json(json_t *v);

/* Open an image for a subcommand; prints the error itself. */
struct block_backend *img_open(const struct image_open *o);

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

#endif
