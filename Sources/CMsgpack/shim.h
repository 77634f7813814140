#pragma once
#include <endian.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bulk packing through msgpack-c's own packer (every msgpack byte still comes from msgpack-c's
   pack functions), with a sink the compiler can inline: the caller makes room for the worst case
   first, so each packed value is a copy of a few bytes into the buffer instead of a call through
   the packer's callback. What the event encoder uses for token ids and block hashes, the bulk of a
   batch. */

/* Grows `sbuf` (as msgpack_sbuffer_write does: doubling) until `len` more bytes fit. 0, or -1 when
   memory is short (the buffer is unchanged then). */
static inline int kvcache_sbuffer_reserve(msgpack_sbuffer* sbuf, size_t len) {
    if (sbuf->alloc - sbuf->size >= len) return 0;
    size_t nsize = sbuf->alloc ? sbuf->alloc * 2 : MSGPACK_SBUFFER_INIT_SIZE;
    while (nsize < sbuf->size + len) nsize *= 2;
    void* tmp = realloc(sbuf->data, nsize);
    if (!tmp) return -1;
    sbuf->data = (char*)tmp;
    sbuf->alloc = nsize;
    return 0;
}

/* The packer's sink once room is made: a plain copy. */
static inline int kvcache_sbuffer_append_reserved(void* data, const char* buf, size_t len) {
    msgpack_sbuffer* sbuf = (msgpack_sbuffer*)data;
    memcpy(sbuf->data + sbuf->size, buf, len);
    sbuf->size += len;
    return 0;
}

/* `values` as a msgpack array of unsigned integers (each in its shortest form, as
   msgpack_pack_uint32 writes it). 0, or -1 when memory is short (nothing written then). */
static inline int kvcache_pack_uint32_array(msgpack_sbuffer* sbuf, const uint32_t* values, size_t n) {
    if (kvcache_sbuffer_reserve(sbuf, 5 + 5 * n) != 0) return -1;
    msgpack_sbuffer local = *sbuf;   /* in registers: no reload of the buffer per value */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &local, kvcache_sbuffer_append_reserved);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_uint32(&pk, values[i]);
    sbuf->size = local.size;
    return 0;
}

/* One 128-bit block hash as `bin 16`: the high 64 bits first, both big-endian (docs/BLOCK_KEYS.md's
   hex as bytes). The packer's status: 0, or -1 when its sink failed. */
static inline int kvcache_pack_hash128(msgpack_packer* pk, uint64_t lo, uint64_t hi) {
    uint64_t be[2] = { htobe64(hi), htobe64(lo) };
    if (msgpack_pack_bin(pk, 16) != 0) return -1;
    return msgpack_pack_bin_body(pk, be, 16);
}

/* `n` 128-bit block hashes, each given as (low 64 bits, high 64 bits) in `halves`, as a msgpack
   array of `kvcache_pack_hash128`'s. 0, or -1 when memory is short (nothing written then). */
static inline int kvcache_pack_hash128_array(msgpack_sbuffer* sbuf, const uint64_t* halves, size_t n) {
    if (kvcache_sbuffer_reserve(sbuf, 5 + 18 * n) != 0) return -1;
    msgpack_sbuffer local = *sbuf;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &local, kvcache_sbuffer_append_reserved);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) kvcache_pack_hash128(&pk, halves[2 * i], halves[2 * i + 1]);
    sbuf->size = local.size;
    return 0;
}
