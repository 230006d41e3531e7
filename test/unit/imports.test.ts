/**
 * No import cycles in src/ (docs/architecture.md: dependencies flow one way, index/facade modules
 * import implementations, never the reverse). Every relative import counts: `import type`,
 * `export … from`, dynamic `import()`, require() in .cts. Specifiers are read with TypeScript's
 * own pre-processor, so comments and strings are not mistaken for imports.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root: the first directory above this file that has package.json (works from dist/ too). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

/** Relative module specifiers of a source file, in order (bare ones like 'node:fs' are left out). */
function relativeSpecifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
}

/** The source file a specifier names under NodeNext: ./x.js → ./x.ts, ./x.cjs → ./x.cts, ./x.mjs → ./x.mts. */
function sourceOf(from: string, specifier: string): string {
  return resolve(dirname(from), specifier).replace(/\.(c|m)?js$/, (_, k: string | undefined) => `.${k ?? ''}ts`);
}

/**
 * One chain per back edge of a depth-first walk (`a > b > a`), each cycle once whatever node it
 * was entered by; every strongly connected component with a cycle yields at least one.
 */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found = new Map<string, string>();
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') {
        const cycle = stack.slice(stack.indexOf(next));
        const first = cycle.indexOf([...cycle].sort()[0]!);
        const rotated = [...cycle.slice(first), ...cycle.slice(0, first)];
        found.set(rotated.join('\0'), [...rotated, rotated[0]].join(' > '));
      } else if (s === undefined) {
        visit(next);
      }
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return [...found.values()].sort();
}

test('specifiers: import, import type, export from, dynamic import(), require(); not comments or strings', (t) => {
  const text = [
    "import { a } from './a.js';",
    "import type { B } from '../b.js';",
    "import { type C } from './c/index.js';",
    "export * from './d.js';",
    "export type { E } from './e.js';",
    "import 'node:fs';",
    "// import x from './comment.js';",
    "/* await import('./block.js') */",
    "const s = \"import y from './string.js'\";",
    "const f = async () => (await import('./f.js')).f;",
    "type G = typeof import('./g.js');",
    "const h = require('./h.cjs');",
  ].join('\n');
  t.deepEqual(relativeSpecifiers(text), ['./a.js', '../b.js', './c/index.js', './d.js', './e.js', './f.js', './g.js', './h.cjs']);
});

test('findCycles names each cycle once, as a chain', (t) => {
  const graph = new Map<string, string[]>([
    ['a', ['b']],
    ['b', ['c', 'd']],
    ['c', ['a']],
    ['d', ['d']],
    ['e', ['a']],
  ]);
  t.deepEqual(findCycles(graph), ['a > b > c > a', 'd > d']);
  t.deepEqual(findCycles(new Map([['a', ['b']], ['b', []]])), []);
});

test('src/ has no import cycles', (t) => {
  const src = join(repoRoot(), 'src');
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.c?ts$/.test(f) && !f.endsWith('.d.ts'))
    .map((f) => join(src, f))
    .sort();
  t.true(files.length > 50, `only ${files.length} .ts/.cts files found under ${src}`);

  const known = new Set(files);
  const graph = new Map<string, string[]>();
  const unresolved: string[] = [];
  let edges = 0;
  for (const file of files) {
    const deps: string[] = [];
    for (const specifier of relativeSpecifiers(readFileSync(file, 'utf8'))) {
      const dep = sourceOf(file, specifier);
      if (known.has(dep)) deps.push(dep);
      else unresolved.push(`${relative(src, file)}: ${specifier}`);
    }
    edges += deps.length;
    graph.set(file, [...new Set(deps)].sort());
  }
  t.deepEqual(unresolved, [], 'relative imports that name no source file under src/');
  t.true(edges > files.length, `only ${edges} imports found in ${files.length} files`);

  const cycles = findCycles(graph).map((chain) => chain.split(' > ').map((f) => relative(src, f)).join(' > '));
  t.deepEqual(cycles, [], `import cycles in src/:\n${cycles.join('\n')}`);
});
