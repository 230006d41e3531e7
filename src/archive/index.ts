/** bpfcr archive layer: see docs/archive-format.md. */
export * from './format.js';
export { MEMBER_NAME_RE, MAX_MEMBER_NAME, memberNameProblem } from './names.js';
export {
  openArchiveWriter,
  outputFormatForPath,
  type ArchiveTarget,
  type ArchiveWriter,
  type Compression,
  type OutputFormat,
  type StreamTarget,
  type WriterOptions,
  type WriterTarget,
} from './writer.js';
export {
  openArchiveReader,
  verifyArchive,
  type ArchiveMember,
  type ArchiveReader,
  type ArchiveSource,
  type MemberCheck,
  type ReaderOptions,
  type VerifyResult,
} from './reader.js';
