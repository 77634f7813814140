/*
 * The private interface between libkvcache_c.so and libkvcache_config.so (not installed, not part of
 * the ABI of kvcache.h).
 *
 * libkvcache_c.so opens libkvcache_config.so with dlopen on the first call that needs a configuration
 * (kvcache_create_from_env, kvcache_create_from_file, kvcache_tiers_create_from_config,
 * kvcache_events_open_from_config) and looks up the functions below. The configuration library reads
 * KVCACHE_* variables and YAML files (swift-configuration, Yams, Foundation) and publishes events over
 * ZMQ (libzmq, msgpack); the core library opens the cache and the tiers itself from the plain values
 * the configuration library resolves, so no Swift object crosses between the two (each links its own
 * copy of the Swift runtime).
 *
 * Strings handed from the configuration library to the caller are malloc'd; the caller frees them
 * with free(). Both libraries use the process's one libc.
 */
#ifndef KVCACHE_CONFIG_LIBRARY_H
#define KVCACHE_CONFIG_LIBRARY_H

#include "kvcache.h"

/** The version of this interface; both libraries must agree (kvcache_config_library_interface). */
#define KVCACHE_CONFIG_LIBRARY_INTERFACE 1

/** kvcache_config_library_settings.numa_placement */
enum kvcache_config_library_numa {
    KVCACHE_CONFIG_NUMA_LOCAL = 0,  /**< the allocating thread's node */
    KVCACHE_CONFIG_NUMA_NODE = 1,   /**< numa_node */
    KVCACHE_CONFIG_NUMA_DEVICE = 2, /**< the node nearest the PCI device numa_device */
};

/** kvcache_config_library_settings.write_policy */
enum kvcache_config_library_write_policy {
    KVCACHE_CONFIG_WRITE_BACK = 0,
    KVCACHE_CONFIG_WRITE_THROUGH = 1,
    KVCACHE_CONFIG_WRITE_AFTER_HITS = 2, /**< after write_after_hits hits */
};

/** The settings a configuration resolves to, validated: the cache, and the tiers when has_tiers. */
typedef struct kvcache_config_library_settings {
    /* cache */
    int64_t block_tokens;
    int64_t capacity_blocks;
    char *key_namespace;            /**< malloc'd */
    char *eviction_policy;          /**< malloc'd, the policy: key's spelling ("lru", "pgdsf-probation", ...) */
    double first_use_weight;
    double protection;
    double horizon_factor;
    bool has_recompute_cost;
    double recompute_seconds_per_token;
    double recompute_seconds_per_context_pair;
    bool enable_prefix_caching;
    bool record_events;             /**< record_events: or events.enabled */
    /* tiers */
    bool has_tiers;
    int64_t layers;
    int64_t kv_heads;
    int64_t head_dim;
    char *dtype;                    /**< malloc'd, the layout.dtype spelling ("fp16", "bf16", ...); NULL without tiers */
    int64_t host_blocks;
    int32_t numa_placement;         /**< enum kvcache_config_library_numa */
    int64_t numa_node;
    char *numa_device;              /**< malloc'd or NULL */
    bool lock_host_memory;
    char *disk_directory;           /**< malloc'd or NULL: no disk tier */
    int64_t disk_capacity_bytes;
    bool compress;
    int32_t write_policy;           /**< enum kvcache_config_library_write_policy */
    int64_t write_after_hits;
    int64_t layer_groups;
    int64_t workers;
    double spill_watermark;
} kvcache_config_library_settings;

/** One event handed to the publisher: the C ABI's event, and its token ids
 *  tokens[first_token ..< first_token + token_count] (BLOCK_STORED of device blocks only). */
typedef struct kvcache_config_library_event {
    kvcache_event event;
    size_t first_token;
    size_t token_count;
} kvcache_config_library_event;

/** The file of the shared object (or executable) that holds this function (dladdr), or NULL: where
 *  libkvcache_c.so looks for libkvcache_config.so. Local to the library that links it (no kvcache_
 *  prefix, so neither version script exports it). */
const char *kvcc_image_path(void);

/** KVCACHE_CONFIG_LIBRARY_INTERFACE of the library. */
int32_t kvcache_config_library_interface(void);

/** Resolves the configuration: the YAML file at `path` under the KVCACHE_* variables, or, when `path`
 *  is NULL, the variables over the file KVCACHE_CONFIG_FILE names. On success returns 0 and fills
 *  *settings; else returns -1, fills nothing and sets *error to a malloc'd sentence naming the key. */
int32_t kvcache_config_library_load(const char *path, kvcache_config_library_settings *settings, char **error);

/** Opens the event publisher that events: describes (read as kvcache_config_library_load reads). On
 *  success returns 0 and sets *publisher (NULL when events.enabled is false); else -1 and *error. */
int32_t kvcache_config_library_events_open(const char *path, void **publisher, char **error);

/** Queues events[0 ..< count] (keys and tokens as the events index them) as one batch stamped now;
 *  returns its sequence number, or -1 when count is 0 or the publisher is closed. O(events + keys). */
int64_t kvcache_config_library_events_publish(void *publisher, const kvcache_config_library_event *events,
                                              size_t count, const kvcache_key *keys, const uint32_t *tokens);

/** Sends what is queued, closes the sockets and frees the publisher. */
void kvcache_config_library_events_close(void *publisher);

#endif
