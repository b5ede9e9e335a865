/* fd_io.h -- whole writes to a file descriptor (prefix aw_).
 *
 * Why: write(2) may write less than asked and be interrupted; downloads to
 * a file (files_api.c, containers.c) and the CLI's saved files
 * (cli_files.c) each need "all of it, or the errno that stopped it", and
 * had each written the loop. */
#ifndef AW_FD_IO_H
#define AW_FD_IO_H

#include <stddef.h>

/** Write all len bytes of data to fd (blocking; EINTR retried).  0 when
 *  all were written, else the errno that stopped it (EIO for a write that
 *  wrote nothing without an error). */
int aw_write_all(int fd, const void *data, size_t len);

#endif
