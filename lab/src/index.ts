/** The lab platform as a library, for programs and benchmarks: start a lab, add its devices, read what its EST server issued. */

export type { LabLimits } from "./intake.js";
export {
  type EstCsrAttrs,
  type EstIssued,
  type EstLabOptions,
  type EstPki,
  type LabApi,
  type LabOptions,
  type RunningLab,
  readEstIssued,
  setDevice,
  startLab,
} from "./server.js";
