/**
 * An error whose message already names its map (mapLabel, meta.ts): the engine passes it on as is
 * and prefixes the label to any other error, deciding by class rather than by the message text.
 * Thrown by the strategies (strategies/) and the engine alike.
 */
export class MapError extends Error {}
