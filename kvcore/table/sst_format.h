/* sst_format.h - on-disk constants of the SSTable format (see kvcore/FORMAT.md, section SSTable).
 *
 * on-disk: never change any value here for format version 1; a new layout needs a new version.
 */
#ifndef KV_SST_FORMAT_H
#define KV_SST_FORMAT_H

#include <stdint.h>

/* "kvSSTab\x01" read as a little-endian fixed64 */
#define SST_MAGIC UINT64_C(0x016261545353766b)
#define SST_FORMAT_VERSION 1

/* Every block on disk is followed by: type (1 byte) + XXH3-64 (fixed64) over contents + type. */
#define SST_TRAILER_SIZE 9
#define SST_BLOCK_RAW 0
#define SST_BLOCK_ZSTD 1

/* footer := filter_offset:8 filter_size:8 index_offset:8 index_size:8 num_entries:8
 *           version:4 reserved:4 checksum:8 magic:8          (all little-endian) */
#define SST_FOOTER_SIZE 64
#define SST_FOOTER_FILTER_OFF 0
#define SST_FOOTER_FILTER_SIZE 8
#define SST_FOOTER_INDEX_OFF 16
#define SST_FOOTER_INDEX_SIZE 24
#define SST_FOOTER_NUM_ENTRIES 32
#define SST_FOOTER_VERSION 40
#define SST_FOOTER_RESERVED 44
#define SST_FOOTER_CHECKSUM 48 /* XXH3-64 over footer bytes [0, 48) */
#define SST_FOOTER_MAGIC 56

/* Blocks whose uncompressed size exceeds this are always stored raw, and a compressed block
 * claiming a larger size is corrupt (bounds the allocation a damaged size can cause). */
#define SST_MAX_COMPRESSED_RAW_SIZE (UINT32_C(64) << 20)

/* Index blocks put every entry at a restart point (keys are never prefix-compressed), so the
 * reader keeps pointers to the keys in place. */
#define SST_INDEX_RESTART_INTERVAL 1

#endif /* KV_SST_FORMAT_H */
