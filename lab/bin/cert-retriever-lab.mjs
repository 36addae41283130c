#!/usr/bin/env node
import { run } from "../dist/cert-retriever-lab.mjs";

process.exitCode = await run(process.argv.slice(2));
