# Sourced by tools/install.sh and tools/capi/selfcontained.sh: the versions of include/kvcache.h (the one
# source of truth) as shell variables KVCACHE_VERSION ("MAJOR.MINOR.PATCH") and KVCACHE_ABI.
kvcache_header="${kvcache_header:-Sources/CKVCache/include/kvcache.h}"
kvcache_define() { sed -n "s/^#define $1 \([0-9][0-9]*\)\$/\1/p" "$kvcache_header"; }
KVCACHE_VERSION="$(kvcache_define KVCACHE_VERSION_MAJOR).$(kvcache_define KVCACHE_VERSION_MINOR).$(kvcache_define KVCACHE_VERSION_PATCH)"
KVCACHE_ABI="$(kvcache_define KVCACHE_ABI_VERSION)"
case "$KVCACHE_VERSION.$KVCACHE_ABI" in
  *[!0-9.]* | *..* | .* | *.) echo "cannot read the versions of $kvcache_header" >&2; exit 1 ;;
esac
