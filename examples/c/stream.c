/* stream.c: a voice assistant's front end in 100 lines of C on top of libamdistill.
 *
 * Reads a 16-bit mono PCM WAV file, feeds it to a bundle's stream in chunks as a
 * microphone would, pops log-posterior frames as they become ready and prints the best
 * senone of each; --out writes every frame as raw little-endian float32 (frames x senones).
 *
 *   cargo build --release
 *   gcc -O2 -I include examples/c/stream.c -L target/release -lamdistill \
 *       -Wl,-rpath,$PWD/target/release -o stream
 *   ./stream recipes/synth/exp/export/student_kd some.wav [--int8] [--chunk 160] [--out post.f32]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amdistill.h"

/* Reads a RIFF/WAVE file of 16-bit mono PCM; returns the samples (malloc'd) or NULL. */
static int16_t *read_wav(const char *path, size_t *n, int *rate) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "%s: cannot open\n", path); return NULL; }
  unsigned char h[12], c[8];
  int16_t *pcm = NULL; int channels = 0, bits = 0;
  if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4)) {
    fprintf(stderr, "%s: not a RIFF/WAVE file\n", path); goto done;
  }
  while (fread(c, 1, 8, f) == 8) {
    uint32_t len = c[4] | c[5] << 8 | c[6] << 16 | (uint32_t)c[7] << 24;
    if (!memcmp(c, "fmt ", 4)) {
      unsigned char fmt[16];
      if (len < 16 || fread(fmt, 1, 16, f) != 16) break;
      channels = fmt[2] | fmt[3] << 8;
      *rate = fmt[4] | fmt[5] << 8 | fmt[6] << 16 | fmt[7] << 24;
      bits = fmt[14] | fmt[15] << 8;
      fseek(f, (long)(len - 16 + (len & 1)), SEEK_CUR);
    } else if (!memcmp(c, "data", 4)) {
      if (channels != 1 || bits != 16) {
        fprintf(stderr, "%s: %d channels of %d bits; this example reads 16-bit mono\n",
                path, channels, bits);
        goto done;
      }
      *n = len / 2;
      pcm = malloc(*n * sizeof *pcm + 1);
      if (!pcm || fread(pcm, 2, *n, f) != *n) {  /* little-endian host assumed */
        fprintf(stderr, "%s: data chunk is truncated\n", path); free(pcm); pcm = NULL;
      }
      goto done;
    } else {
      fseek(f, (long)(len + (len & 1)), SEEK_CUR);
    }
  }
  fprintf(stderr, "%s: no fmt/data chunk\n", path);
done:
  fclose(f);
  return pcm;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s BUNDLE WAV [--int8] [--chunk N] [--out FILE]\n", argv[0]);
    return 2;
  }
  int int8 = 0; size_t chunk = 160; const char *out_path = NULL;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--int8")) int8 = 1;
    else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
    else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
  }
  if (chunk == 0) chunk = 1;

  char err[1024];
  amdistill_stream *s = amdistill_stream_create(argv[1], int8, err, sizeof err);
  if (!s) { fprintf(stderr, "amdistill: %s\n", err); return 1; }
  size_t n = 0; int rate = 0;
  int16_t *pcm = read_wav(argv[2], &n, &rate);
  if (!pcm) { amdistill_stream_free(s); return 1; }
  if (rate != amdistill_stream_sample_rate(s)) {
    fprintf(stderr, "%s: %d Hz, the bundle expects %d Hz\n", argv[2], rate,
            amdistill_stream_sample_rate(s));
    return 1;
  }

  int senones = amdistill_stream_num_senones(s);
  float *frame = malloc(sizeof(float) * (size_t)senones);
  FILE *out = out_path ? fopen(out_path, "wb") : NULL;
  if (out_path && !out) { fprintf(stderr, "%s: cannot create\n", out_path); return 1; }
  long frames = 0;
  for (size_t at = 0, last = 0; !last; at += chunk) {
    last = at >= n; /* after the last chunk: end of utterance */
    int ready = last ? amdistill_stream_finish(s)
                     : amdistill_stream_push_s16(s, pcm + at, n - at < chunk ? n - at : chunk);
    if (ready < 0) { fprintf(stderr, "amdistill: %s\n", amdistill_stream_last_error(s)); return 1; }
    while (amdistill_stream_pop(s, frame, 1) == 1) {
      int best = 0;
      for (int k = 1; k < senones; k++) if (frame[k] > frame[best]) best = k;
      if (out) fwrite(frame, sizeof(float), (size_t)senones, out);
      printf("%s%d", frames % 20 ? " " : (frames ? "\n" : ""), best);
      frames++;
    }
  }
  printf("\nframes %ld senones %d latency_frames %d latency_ms %.1f %s\n", frames, senones,
         amdistill_stream_latency_frames(s), 1000.0 * amdistill_stream_latency_seconds(s),
         int8 ? "int8" : "fp32");
  if (out) fclose(out);
  free(frame); free(pcm);
  amdistill_stream_free(s);
  return 0;
}
