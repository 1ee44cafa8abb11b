/* A program using libcomet.so through the C ABI, for the `comet probe` tests: opens DIR with the
 * given settings, makes APPENDS comet_append calls to probe:shard:0000 with batch sizes cycling
 * 1, 3, 7, 16 (entry k of the run is 10 + k % 50 bytes), then SYNCS comet_sync calls, and prints
 * "entries=E bytes=B" on stdout.
 *
 *   comet_probe_target DIR APPENDS SYNCS [key=value ...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comet/comet.h"

static int die(const char *what) {
	fprintf(stderr, "comet_probe_target: %s: %s\n", what, comet_last_error());
	return 1;
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: comet_probe_target DIR APPENDS SYNCS [key=value ...]\n");
		return 2;
	}
	const long appends = atol(argv[2]), syncs = atol(argv[3]);
	comet_config *cfg = comet_config_new();
	for (int i = 4; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) return die("setting without '='");
		*eq = '\0';
		if (comet_config_set(cfg, argv[i], eq + 1) != COMET_OK) return die(argv[i]);
	}
	comet_client *c;
	if (comet_open(argv[1], cfg, &c) != COMET_OK) return die("open");
	comet_config_free(cfg);

	static const size_t batches[] = {1, 3, 7, 16};
	static char payload[64];
	memset(payload, 'x', sizeof payload);
	const void *data[16];
	size_t lens[16];
	unsigned long long entries = 0, bytes = 0;
	for (long i = 0; i < appends; i++) {
		size_t n = batches[i % 4];
		for (size_t j = 0; j < n; j++) {
			data[j] = payload;
			lens[j] = 10 + (entries + j) % 50;
			bytes += lens[j];
		}
		entries += n;
		if (comet_append(c, "probe:shard:0000", data, lens, n, NULL) != COMET_OK) return die("append");
	}
	for (long i = 0; i < syncs; i++)
		if (comet_sync(c) != COMET_OK) return die("sync");
	if (comet_close(c) != COMET_OK) return die("close");
	printf("entries=%llu bytes=%llu\n", entries, bytes);
	return 0;
}
