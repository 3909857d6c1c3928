/* amdistill.h: the C ABI of amdistill's streaming runtime (libamdistill.so / .a).
 *
 * A stream turns PCM audio, in chunks of any size, into per-frame senone log-posteriors
 * from an exported bundle (`amdistill export`): the bundle's fbank, its CMVN and its
 * student, fp32 or int8. Output frames come out as soon as the model's right context has
 * arrived (amdistill_stream_latency_frames); concatenated over an utterance they equal
 * `amdistill score`'s offline forward exactly.
 *
 * Conventions: functions returning int give a count (>= 0) or -1 on error, with the
 * message in amdistill_stream_last_error(). One handle is used by one thread at a time;
 * handles are independent. Build: cargo build --release, then link with
 *   -I include -L target/release -lamdistill
 */
#ifndef AMDISTILL_H
#define AMDISTILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct AmdistillStream amdistill_stream;

/* Opens bundle directory `bundle_dir` (checksums verified); `int8` != 0 runs the int8
 * weights. Returns NULL on failure with the reason in `err` (err_len bytes; may be NULL). */
amdistill_stream *amdistill_stream_create(const char *bundle_dir, int int8, char *err,
                                          size_t err_len);
void amdistill_stream_free(amdistill_stream *s);

/* Appends n samples at amdistill_stream_sample_rate(): float with full scale 1.0, or
 * 16-bit PCM. Returns the number of frames ready to pop, or -1. */
int amdistill_stream_push(amdistill_stream *s, const float *samples, size_t n);
int amdistill_stream_push_s16(amdistill_stream *s, const int16_t *samples, size_t n);

/* Ends the utterance: flushes the frames held back for right context. Returns the number
 * of frames ready to pop, or -1. The stream then takes the next utterance. */
int amdistill_stream_finish(amdistill_stream *s);

/* Copies up to max_frames ready frames into out (max_frames * num_senones floats,
 * frame-major: frame 0's senones, then frame 1's...). Returns the frames copied (0 when
 * none is ready), or -1. */
int amdistill_stream_pop(amdistill_stream *s, float *out, size_t max_frames);

/* Frames ready to pop, or -1. */
int amdistill_stream_pending(amdistill_stream *s);

/* Drops the utterance in progress and every frame not yet popped. */
void amdistill_stream_reset(amdistill_stream *s);

int amdistill_stream_num_senones(amdistill_stream *s);     /* log-posteriors per frame */
int amdistill_stream_sample_rate(amdistill_stream *s);     /* Hz */
int amdistill_stream_latency_frames(amdistill_stream *s);  /* right context, frames */
double amdistill_stream_latency_seconds(amdistill_stream *s); /* + window past the shift */

/* The last error on this handle ("" when none); valid until the next call on it. */
const char *amdistill_stream_last_error(amdistill_stream *s);

/* The library version, e.g. "0.1.0". */
const char *amdistill_version(void);

#ifdef __cplusplus
}
#endif

#endif /* AMDISTILL_H */
