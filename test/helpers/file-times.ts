import { appendFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

/**
 * A reporter that writes each test file's whole time, as a JSON line, to the file
 * CERT_RETRIEVER_FILE_TIMES names: importing it, its setup, and every test and hook (the JSON
 * report's start and end times cover the tests alone). `.ci/run` bounds each file with it.
 */
export default class FileTimes implements Reporter {
  onTestModuleEnd(module: TestModule): void {
    const out = process.env.CERT_RETRIEVER_FILE_TIMES;
    if (!out) return;
    const d = module.diagnostic();
    const ms = d.environmentSetupDuration + d.prepareDuration + d.collectDuration + d.setupDuration + d.duration;
    appendFileSync(out, `${JSON.stringify({ file: module.moduleId, project: module.project.name, ms })}\n`);
  }
}
