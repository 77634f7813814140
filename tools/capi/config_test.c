/* The cache and its tiers from one configuration file through kvcache.h from C: kvcache_create_from_file
 * opens the device pool and kvcache_tiers_create_from_config the host and disk tiers the file's tiers:
 * and layout: sections name (sizes checked through the stats, a block stored to disk and read back); the
 * environment's variables override the file, a NULL path reads the environment (KVCACHE_CONFIG_FILE); a
 * file without tiers opens none; a bad key, a tier without a layout and one copy callback fail with the
 * key named and nothing opened; the event publisher's refusals; without libkvcache_config.so (KVCACHE_CONFIG_LIBRARY
 * naming a missing file, or another library) every configuration call fails with KVCACHE_ERR_CONFIG_LIBRARY
 * and opens nothing. Exits non-zero on the first unexpected result. Built and run by
 * tools/capi/smoke.sh. */
#define _POSIX_C_SOURCE 200809L  /* mkdtemp, setenv */
#include "kvcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char folder[64];

/* Writes `text` to FOLDER/name and returns the path (static storage, one at a time). */
static const char *write_file(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
    return path;
}

static void never_called(void *context, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token) {
    (void)context; (void)block; (void)offset; (void)length; (void)host; (void)token;
}

int main(void) {
    strcpy(folder, "/tmp/kvcache-config-XXXXXX");
    if (!mkdtemp(folder)) { perror("mkdtemp"); return 1; }
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "capacity_blocks: 32\nblock_tokens: 16\n"
             "layout:\n  layers: 2\n  kv_heads: 2\n  head_dim: 8\n  dtype_bytes: 2\n"
             "tiers:\n  host_blocks: 12\n  disk_path: %s/disk\n  disk_bytes: 1048576\n  lock_host_memory: false\n"
             "  layer_groups: 1\n",
             folder);
    char path[128];
    snprintf(path, sizeof path, "%s", write_file("tiers.yaml", yaml));
    unsetenv("KVCACHE_TIERS_HOST_BLOCKS");
    unsetenv("KVCACHE_CONFIG_FILE");

    /* The cache and its tiers from the one file. */
    kvcache_t *cache = NULL;
    CHECK(kvcache_create_from_file(path, &cache) == KVCACHE_OK && cache);
    kvcache_tiers_t *tiers = NULL;
    CHECK(kvcache_tiers_create_from_config(path, NULL, NULL, NULL, &tiers) == KVCACHE_OK && tiers);
    kvcache_tier_stats stats;
    CHECK(kvcache_tiers_get_stats(tiers, &stats) == KVCACHE_OK);
    /* A block: 2 layers x 2 (K, V) x 2 heads x 8 dims x 2 bytes x 16 tokens. */
    CHECK(stats.block_bytes == 2 * 2 * 2 * 8 * 2 * 16);
    CHECK(stats.host.capacity == 12);
    /* The disk tier is there: a block put is read back byte for byte. */
    unsigned char put[2048], got[2048];
    for (size_t i = 0; i < sizeof put; i++) put[i] = (unsigned char)(i * 7 + 3);
    kvcache_key key = {0x1234, 0x5678};
    bool stored = false, found = false;
    CHECK(kvcache_tiers_disk_put(tiers, key, NULL, put, (size_t)stats.block_bytes, &stored) == KVCACHE_OK && stored);
    CHECK(kvcache_tiers_disk_get(tiers, key, got, (size_t)stats.block_bytes, &found) == KVCACHE_OK && found);
    CHECK(memcmp(put, got, (size_t)stats.block_bytes) == 0);
    CHECK(kvcache_tiers_destroy(tiers) == KVCACHE_OK);
    CHECK(kvcache_destroy(cache) == KVCACHE_OK);

    /* A variable overrides the file; a NULL path reads the environment and the file it names. */
    setenv("KVCACHE_TIERS_HOST_BLOCKS", "5", 1);
    tiers = NULL;
    CHECK(kvcache_tiers_create_from_config(path, NULL, NULL, NULL, &tiers) == KVCACHE_OK && tiers);
    CHECK(kvcache_tiers_get_stats(tiers, &stats) == KVCACHE_OK && stats.host.capacity == 5);
    CHECK(kvcache_tiers_destroy(tiers) == KVCACHE_OK);
    setenv("KVCACHE_CONFIG_FILE", path, 1);
    tiers = NULL;
    CHECK(kvcache_tiers_create_from_config(NULL, NULL, NULL, NULL, &tiers) == KVCACHE_OK && tiers);
    CHECK(kvcache_tiers_get_stats(tiers, &stats) == KVCACHE_OK && stats.host.capacity == 5);
    CHECK(kvcache_tiers_destroy(tiers) == KVCACHE_OK);
    unsetenv("KVCACHE_CONFIG_FILE");
    unsetenv("KVCACHE_TIERS_HOST_BLOCKS");

    /* No tier configured: KVCACHE_OK and no handle. */
    tiers = (kvcache_tiers_t *)&found;
    CHECK(kvcache_tiers_create_from_config(write_file("plain.yaml", "capacity_blocks: 8\n"), NULL, NULL, NULL, &tiers)
          == KVCACHE_OK && tiers == NULL);

    /* Refusals name the key and open nothing. */
    kvcache_tiers_t *sentinel = (kvcache_tiers_t *)&found;
    tiers = sentinel;
    CHECK(kvcache_tiers_create_from_config(write_file("bad.yaml", "capacity_blocks: 8\ntiers:\n  host_blocks: -3\n"), NULL, NULL,
                                           NULL, &tiers) == KVCACHE_ERR_INVALID_ARGUMENT && tiers == sentinel);
    CHECK(strstr(kvcache_last_error(), "kvcache_tiers_create_from_config: invalid argument") != NULL);
    CHECK(strstr(kvcache_last_error(), "tiers.host_blocks (KVCACHE_TIERS_HOST_BLOCKS)") != NULL);
    CHECK(kvcache_tiers_create_from_config(write_file("nolayout.yaml", "capacity_blocks: 8\ntiers:\n  host_blocks: 4\n"), NULL,
                                           NULL, NULL, &tiers) == KVCACHE_ERR_INVALID_ARGUMENT && tiers == sentinel);
    CHECK(strstr(kvcache_last_error(), "layout.layers") != NULL);
    CHECK(kvcache_tiers_create_from_config(path, never_called, NULL, NULL, &tiers) == KVCACHE_ERR_INVALID_ARGUMENT
          && tiers == sentinel);
    CHECK(strstr(kvcache_last_error(), "copy callbacks") != NULL);
    CHECK(kvcache_tiers_create_from_config(path, NULL, NULL, NULL, NULL) == KVCACHE_ERR_NULL_POINTER);

    /* The event publisher: none unless events.enabled; a bad address names its key; NULL handles. */
    cache = NULL;
    CHECK(kvcache_create_from_file(path, &cache) == KVCACHE_OK && cache);
    kvcache_events_t *events = (kvcache_events_t *)&found;
    CHECK(kvcache_events_open_from_config(cache, path, &events) == KVCACHE_OK && events == NULL);
    events = (kvcache_events_t *)&found;
    CHECK(kvcache_events_open_from_config(cache, write_file("badevents.yaml", "capacity_blocks: 8\nevents:\n  enabled: true\n"
                                                            "  endpoint: nonsense://here\n"), &events)
          == KVCACHE_ERR_INVALID_ARGUMENT && events == (kvcache_events_t *)&found);
    CHECK(strstr(kvcache_last_error(), "events.endpoint") != NULL);
    CHECK(kvcache_events_open_from_config(NULL, path, &events) == KVCACHE_ERR_NULL_HANDLE);
    CHECK(kvcache_events_open_from_config(cache, path, NULL) == KVCACHE_ERR_NULL_POINTER);
    CHECK(kvcache_events_publish(NULL, NULL) == KVCACHE_ERR_NULL_HANDLE);
    CHECK(kvcache_events_publish((kvcache_events_t *)cache, NULL) == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(kvcache_events_close(NULL) == KVCACHE_ERR_NULL_HANDLE);
    CHECK(kvcache_events_add_tiers(NULL, NULL) == KVCACHE_ERR_NULL_HANDLE);
    CHECK(kvcache_events_add_tiers((kvcache_events_t *)cache, NULL) == KVCACHE_ERR_INVALID_ARGUMENT);

    /* Without libkvcache_config.so every configuration call fails with CONFIG_LIBRARY, names the files
     * tried and opens nothing; the rest of the library works on; once it is found again, so do they. */
    setenv("KVCACHE_CONFIG_LIBRARY", "/nonexistent/libkvcache_config.so.1", 1);
    kvcache_t *none = (kvcache_t *)&found;
    CHECK(kvcache_create_from_file(path, &none) == KVCACHE_ERR_CONFIG_LIBRARY && none == (kvcache_t *)&found);
    CHECK(strstr(kvcache_last_error(), "kvcache_create_from_file: libkvcache_config.so is needed") != NULL);
    CHECK(strstr(kvcache_last_error(), "/nonexistent/libkvcache_config.so.1") != NULL);
    CHECK(kvcache_create_from_env(&none) == KVCACHE_ERR_CONFIG_LIBRARY && none == (kvcache_t *)&found);
    tiers = sentinel;
    CHECK(kvcache_tiers_create_from_config(path, NULL, NULL, NULL, &tiers) == KVCACHE_ERR_CONFIG_LIBRARY && tiers == sentinel);
    CHECK(kvcache_events_open_from_config(cache, path, &events) == KVCACHE_ERR_CONFIG_LIBRARY);
    CHECK(strcmp(kvcache_status_name(KVCACHE_ERR_CONFIG_LIBRARY), "KVCACHE_ERR_CONFIG_LIBRARY") == 0);
    /* A library that is there but is not the configuration library. */
    setenv("KVCACHE_CONFIG_LIBRARY", "libm.so.6", 1);
    CHECK(kvcache_create_from_file(path, &none) == KVCACHE_ERR_CONFIG_LIBRARY && none == (kvcache_t *)&found);
    CHECK(strstr(kvcache_last_error(), "libm.so.6: not a kvcache configuration library") != NULL);
    kvcache_stats cache_stats;
    CHECK(kvcache_get_stats(cache, &cache_stats) == KVCACHE_OK && cache_stats.capacity_blocks == 32);
    unsetenv("KVCACHE_CONFIG_LIBRARY");
    CHECK(kvcache_create_from_file(path, &none) == KVCACHE_OK && none != (kvcache_t *)&found);
    CHECK(kvcache_destroy(none) == KVCACHE_OK);
    CHECK(kvcache_destroy(cache) == KVCACHE_OK);

    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", folder);
    if (failures) { fprintf(stderr, "config_test: %d failures\n", failures); return 1; }
    printf("config_test: the cache and its tiers from one file, the publisher's refusals, a missing configuration library: ok\n");
    return 0;
}
