/**
 * Unit tests: OCI state parsing, io.bpfcr.* annotations, the state-path rule, container path →
 * host path mapping through config.json mounts, and the validation of a state file's oci/pins.json.
 */
import test from 'ava';
import { hostLocation, parseMounts, type OciMount } from '../../src/oci/mounts.js';
import {
  absolutePathProblem, hasBpfcrAnnotation, isUnder, parseAnnotations, parseState, relativeTo, statePathProblem,
} from '../../src/oci/state.js';
import { validatePinsRecord } from '../../src/oci/statefile.js';

const good = { ociVersion: '1.0.2', id: 'abc', status: 'stopped', bundle: '/b', annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app' } };

test('parseState accepts runtime-spec state, pid optional (absent at poststop)', (t) => {
  const s = parseState(JSON.stringify(good));
  t.deepEqual(s, { ociVersion: '1.0.2', id: 'abc', status: 'stopped', bundle: '/b', annotations: { 'io.bpfcr.pins': '/sys/fs/bpf/app' } });
  t.is(parseState(JSON.stringify({ ...good, pid: 42, status: 'creating' })).pid, 42);
  t.deepEqual(parseState(JSON.stringify({ ...good, annotations: undefined })).annotations, {});
});

test('parseState: malformed input gives one-line errors that say what is wrong', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['   \n', /empty/],
    ['{"ociVersion":', /not valid JSON/],
    ['[1,2]', /expected a JSON object, got an array/],
    ['null', /got null/],
    ['"x"', /got string/],
    [JSON.stringify({ ...good, id: '' }), /"id" must be a non-empty string/],
    [JSON.stringify({ ...good, bundle: undefined }), /"bundle" must be a non-empty string, got nothing/],
    [JSON.stringify({ ...good, bundle: 'rel/dir' }), /"bundle" must be an absolute path/],
    [JSON.stringify({ ...good, pid: -3 }), /"pid" must be a positive integer/],
    [JSON.stringify({ ...good, pid: '12' }), /"pid" must be a positive integer/],
    [JSON.stringify({ ...good, annotations: ['a'] }), /"annotations" must be an object of strings, got an array/],
    [JSON.stringify({ ...good, annotations: { 'io.bpfcr.pins': 5 } }), /annotation "io.bpfcr.pins" must be a string, got 5/],
    ['x'.repeat((1 << 20) + 1), /larger than/],
  ];
  for (const [input, re] of cases) {
    const e = t.throws(() => parseState(input), undefined, input.slice(0, 60));
    t.regex(e!.message, re, input.slice(0, 60));
    t.regex(e!.message, /^OCI state on stdin: /);
    t.false(e!.message.includes('\n'), 'one line');
  }
});

test('hasBpfcrAnnotation: opt-in is any io.bpfcr.* key', (t) => {
  t.false(hasBpfcrAnnotation({}));
  t.false(hasBpfcrAnnotation({ 'io.podman.annotations.init': 'FALSE', 'io.bpfcrx': '1' }));
  t.true(hasBpfcrAnnotation({ 'io.bpfcr.anything': '' }));
});

test('parseAnnotations: pins list, state paths, on-existing, unknown keys', (t) => {
  const a = parseAnnotations({
    'io.bpfcr.pins': ' /sys/fs/bpf/app , /sys/fs/bpf/other/pin,/sys/fs/bpf/app,',
    'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/web.tar',
    'io.bpfcr.restore-from': '/var/lib/bpfcr/state/old/web.tar.gz',
    'io.bpfcr.on-existing': 'keep',
    'io.bpfcr.future': 'x',
    'other': 'y',
  });
  t.deepEqual(a.pins, ['/sys/fs/bpf/app', '/sys/fs/bpf/other/pin']);
  t.is(a.saveOnStop, '/var/lib/bpfcr/state/web.tar');
  t.is(a.restoreFrom, '/var/lib/bpfcr/state/old/web.tar.gz');
  t.is(a.onExisting, 'keep');
  t.deepEqual(a.unknown, ['io.bpfcr.future']);
  t.is(parseAnnotations({ 'io.bpfcr.pins': '/a/b' }).onExisting, 'replace', 'replace is the default');
});

test('parseAnnotations refuses bad pin paths and state paths outside /var/lib/bpfcr/state', (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'io.bpfcr.pins': '' }, /lists no path/],
    [{ 'io.bpfcr.pins': 'sys/fs/bpf/app' }, /not an absolute path/],
    [{ 'io.bpfcr.pins': '/sys/fs/bpf/../../etc' }, /has a "\.\." component/],
    [{ 'io.bpfcr.pins': '/sys/fs/bpf//app' }, /empty component/],
    [{ 'io.bpfcr.pins': '/sys/fs/bpf/app/' }, /trailing/],
    [{ 'io.bpfcr.pins': '/' }, /root directory/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/etc/shadow' }, /must be a file under \/var\/lib\/bpfcr\/state\//],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/../../../etc/x.tar' }, /"\.\." component/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/statex/a.tar' }, /must be a file under/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state' }, /must be a file under/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/.hidden.tar' }, /not start with "\."/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/a b.tar' }, /letters, digits/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.restore-from': '/var/lib/bpfcr/state/a.zip' }, /must end in \.tar/],
    [{ 'io.bpfcr.pins': '/a', 'io.bpfcr.restore-from': 'var/lib/bpfcr/state/a.tar' }, /not an absolute path/],
    [{ 'io.bpfcr.save-on-stop': '/var/lib/bpfcr/state/a.tar' }, /needs io\.bpfcr\.pins/],
    [{ 'io.bpfcr.restore-from': '/var/lib/bpfcr/state/a.tar' }, /needs io\.bpfcr\.pins/],
    [{ 'io.bpfcr.on-existing': 'merge' }, /must be "replace" \(default\) or "keep"/],
  ];
  for (const [ann, re] of cases) {
    const e = t.throws(() => parseAnnotations(ann), undefined, JSON.stringify(ann));
    t.regex(e!.message, re, JSON.stringify(ann));
    t.regex(e!.message, /^annotation io\.bpfcr\.[a-z-]+=".*": /, 'names the annotation and its value');
  }
});

test('statePathProblem / absolutePathProblem / isUnder / relativeTo', (t) => {
  t.is(statePathProblem('/var/lib/bpfcr/state/a.tar'), undefined);
  t.is(statePathProblem('/var/lib/bpfcr/state/team-1/app_2.tgz'), undefined);
  t.truthy(statePathProblem('/var/lib/bpfcr/state/a.tar\n'));
  t.is(absolutePathProblem('/sys/fs/bpf/x'), undefined);
  t.true(isUnder('/a/b/c', '/a/b'));
  t.true(isUnder('/a/b', '/a/b'));
  t.false(isUnder('/a/bc', '/a/b'));
  t.true(isUnder('/x', '/'));
  t.is(relativeTo('/a/b/c/d', '/a/b'), 'c/d');
  t.is(relativeTo('/a/b', '/a/b'), '');
  t.is(relativeTo('/x/y', '/'), 'x/y');
});

const mounts: OciMount[] = parseMounts({
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/sys', type: 'sysfs', source: 'sysfs' },
    { destination: '/sys/fs/bpf', type: 'tmpfs', source: 'tmpfs' },
    { destination: '/sys/fs/bpf/app', type: 'bind', source: '/host/bpf/app', options: ['rbind'] },
    { destination: '/sys/fs/bpf/app/sub/', source: '/host/bpf/other', options: ['bind', 'ro'] },
    { destination: '/data', source: '/host/data', type: 'none', options: ['rbind'] },
    { destination: '/private', source: 'bpf', type: 'bpf' },
    { destination: '/data', source: '/host/data2', type: 'bind' },
  ],
});

test('hostLocation maps a container path through the covering bind mount (last one wins)', (t) => {
  const a = hostLocation('/sys/fs/bpf/app/counters', mounts);
  t.is(a.source, '/host/bpf/app');
  t.is(a.rel, 'counters');
  t.is(hostLocation('/sys/fs/bpf/app', mounts).rel, '');
  const b = hostLocation('/sys/fs/bpf/app/sub/x/y', mounts);
  t.is(b.source, '/host/bpf/other', 'the deeper, later mount covers it');
  t.is(b.rel, 'x/y');
  t.is(hostLocation('/data/p', mounts).source, '/host/data2', 'a later mount on the same destination wins');
});

test('hostLocation refuses paths not below a bind mount of a host path, saying why', (t) => {
  t.regex(t.throws(() => hostLocation('/sys/fs/bpf/appx', mounts))!.message, /inside a tmpfs mount at \/sys\/fs\/bpf, not a bind mount/, 'component-wise, not string prefix');
  t.regex(t.throws(() => hostLocation('/private/x', mounts))!.message, /private bpffs mounted at \/private in the container, which vanishes/);
  t.regex(t.throws(() => hostLocation('/opt/x', mounts))!.message, /not inside any bind mount of the container/);
  t.regex(t.throws(() => hostLocation('/proc/1', mounts))!.message, /proc mount at \/proc/);
  t.regex(t.throws(() => hostLocation('/x', parseMounts({ mounts: [{ destination: '/x', options: ['bind'] }] })))!.message, /no absolute host source/);
  t.regex(t.throws(() => parseMounts({ mounts: {} }))!.message, /"mounts" is not an array/);
});

const rec = {
  format: 'bpfcr-oci-pins', version: 1, created: '2026-01-01T00:00:00Z', container: { id: 'x', pins: ['/a'] },
  pins: [{ path: '/a/m', mapId: 7, mode: 0o600, uid: 0, gid: 0 }], dirs: [{ path: '/a', mode: 0o755, uid: 0, gid: 0 }], skipped: [],
};

test('validatePinsRecord accepts what the hook writes and refuses anything odd', (t) => {
  t.is(validatePinsRecord(rec).pins[0]!.mapId, 7);
  const bad: [unknown, RegExp][] = [
    [[], /not a JSON object/],
    [{ ...rec, format: 'x' }, /format is "x"/],
    [{ ...rec, version: 2 }, /newer than this bpfcr understands/],
    [{ ...rec, pins: [{ ...rec.pins[0], path: '/a/../etc/m' }] }, /pins\[0\]\.path .* "\.\." component/],
    [{ ...rec, pins: [{ ...rec.pins[0], path: 'rel' }] }, /not an absolute path/],
    [{ ...rec, pins: [{ ...rec.pins[0], mapId: 0 }] }, /mapId is not a map id/],
    [{ ...rec, pins: [{ ...rec.pins[0], mode: 0o170000 }] }, /mode is not a permission mode/],
    [{ ...rec, pins: [rec.pins[0], rec.pins[0]] }, /listed twice/],
    [{ ...rec, format: 'bpfcr-oci-state' }, /oci\/pins\.json: format is "bpfcr-oci-state", expected bpfcr-oci-pins/],
    [{ ...rec, dirs: {} }, /dirs is not an array/],
  ];
  for (const [v, re] of bad) t.regex(t.throws(() => validatePinsRecord(v))!.message, re);
});
