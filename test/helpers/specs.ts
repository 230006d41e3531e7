/**
 * Every content-carrying map type the engine supports, as bpfholder specs, with explicit entry
 * counts; plus the transient types whose default policy is "empty". Shared by the engine, runc
 * and podman suites. c_mmap only has BPF_F_MMAPABLE: bpfholder never mmaps it, so CRIU can dump it
 * (an mmapped one cannot be dumped by any CRIU).
 */
export const CONTENT_SPECS = [
  'hash:c_hash:entries=100,max=256',
  'lru_hash:c_lru:entries=50,max=128',
  'percpu_hash:c_pcpu_hash:entries=40,max=64,value=12',
  'lru_percpu_hash:c_lru_pcpu:entries=20,max=64',
  'array:c_array:max=32',
  'percpu_array:c_pcpu_array:max=16',
  'lpm_trie:c_lpm:entries=20,max=64',
  'queue:c_queue:entries=10,max=16',
  'stack:c_stack:entries=10,max=16',
  'array_of_maps:c_aofm:entries=3,max=4,inner=array/key=4/value=8/max=8/entries=8',
  'hash_of_maps:c_hofm:entries=3,max=8,inner=hash/key=4/value=8/max=16/entries=5',
  'hash:c_btf:btf=1,key=4,value=8,entries=10,max=16',
  'array:c_frozen:frozen=1,max=8,entries=8',
  'array:c_mmap:mmapable=1,max=8,entries=8',
  // transient types: default policy "empty" (recreated without contents)
  'ringbuf:c_ringbuf',
  'user_ringbuf:c_uringbuf',
  'perf_event_array:c_perf',
];
