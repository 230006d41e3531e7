/**
 * An archive is untrusted input (it may come from another host, or be tampered with): every
 * field of a map's meta.json is checked before it reaches bpf(2) or a path.
 */
import { mapTypeById } from '../maps/types.js';
import type { MapMeta } from '../maps/meta.js';
import { LAYOUTS, strategyForLayout } from '../maps/strategies/index.js';

const NAME_RE = /^[A-Za-z0-9_.]{0,15}$/;

function u32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** `archiveCpus`: the possible-CPU count the archive's header records (per-CPU value strides). */
export function validateMeta(raw: unknown, member: string, expectedIndex: number, archiveCpus: number): MapMeta {
  const bad = (what: string): never => { throw new Error(`member ${member}: invalid ${what}`); };
  if (typeof raw !== 'object' || raw === null) bad('JSON (not an object)');
  const m = raw as Record<string, unknown>;
  if (m['index'] !== expectedIndex) bad(`index ${String(m['index'])} (expected ${expectedIndex})`);
  for (const k of ['id', 'typeId', 'keySize', 'valueSize', 'maxEntries', 'flags', 'valueStride']) if (!u32(m[k])) bad(k);
  if (typeof m['name'] !== 'string' || !NAME_RE.test(m['name'])) bad(`name ${JSON.stringify(m['name'])}`);
  const t = mapTypeById(m['typeId'] as number);
  if (t.recreatable === false) bad(`type ${t.name}: it cannot be recreated`);
  if (m['type'] !== t.name) bad(`type ${JSON.stringify(m['type'])} for typeId ${String(m['typeId'])}`);
  if (typeof m['mapExtra'] !== 'string' || !/^\d{1,20}$/.test(m['mapExtra'])) bad('mapExtra');
  if (typeof m['frozen'] !== 'boolean' || typeof m['top'] !== 'boolean') bad('frozen/top');
  if (m['policy'] !== 'content' && m['policy'] !== 'empty') bad('policy');
  const strategy = typeof m['layout'] === 'string' ? strategyForLayout(m['layout']) : undefined;
  if (!strategy) bad(`layout (not one of ${LAYOUTS.join(', ')})`);
  if (m['btf'] !== null) {
    const b = m['btf'] as Record<string, unknown>;
    if (typeof b !== 'object' || !u32(b['id']) || !u32(b['keyTypeId']) || !u32(b['valueTypeId'])) bad('btf');
  }
  if (m['innerTemplate'] !== undefined) {
    const it = m['innerTemplate'] as Record<string, unknown>;
    if (typeof it !== 'object' || it === null || !['type', 'keySize', 'valueSize', 'maxEntries', 'flags'].every((k) => u32(it[k]))) bad('innerTemplate');
  }
  // The stride the layout's strategy computes for the dumping host: a meta.json that disagrees
  // would have its data members cut at the wrong places. 64 MiB per value bounds the chunk math.
  const stride = m['valueStride'] as number;
  if (stride !== strategy!.valueStride(t, m['valueSize'] as number, archiveCpus) || stride > 1 << 26) bad('valueStride');
  if (!Array.isArray(m['refs'])) bad('refs');
  return m as unknown as MapMeta;
}
