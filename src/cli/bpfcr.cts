#!/usr/bin/env node
/**
 * The bpfcr command (package.json bin, the installed launcher, hooks/checkpoint): runs the CLI from the
 * one-file bundle (load.cts says why).
 */
import { loadBundle } from './load.cjs';

loadBundle().runCli(process.argv.slice(2));
