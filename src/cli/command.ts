import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit codes: 0 success, 1 failure, 2 usage. */
export class UsageError extends Error {}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** util.parseArgs with --help handled and parse errors turned into UsageError (exit 2). */
export function parse<O extends Options>(cmd: Pick<Command, 'usage'>, argv: string[], options: O, allowPositionals = true) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if ((parsed.values as Record<string, unknown>)['help']) {
    process.stdout.write(cmd.usage.trimEnd() + '\n');
    return undefined;
  }
  return parsed;
}

export function intList(name: string, values: string[] | undefined): number[] {
  return (values ?? []).flatMap((v) => v.split(',')).filter(Boolean).map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${name}: not a positive integer: ${v}`);
    return n;
  });
}

/** Plain fixed-width table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function hex(n: number): string {
  return '0x' + n.toString(16);
}
