/**
 * An error whose message already names its map (mapLabel, meta.ts): the engine passes it on as is
 * and prefixes the label to any other error, deciding by class rather than by the message text.
 * Thrown by the strategies (strategies/) and the engine alike.
 */
export class MapError extends Error {}

/** "map id 42 'flows' (HASH)" — how every message names a map (here, below meta.ts, so that
 *  modules the strategies import can use it without an import cycle). */
export function mapLabel(m: { id: number; name: string; type: string }): string {
  return `map id ${m.id} '${m.name}' (${m.type.toUpperCase()})`;
}
