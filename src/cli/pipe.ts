/**
 * `bpfcr show … | head`: a reader that goes away ends the output; that is no failure, and no
 * "Unhandled 'error' event" stack either. main.ts installs it for every command.
 */
export function endOnClosedPipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
