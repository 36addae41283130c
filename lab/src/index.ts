/** The lab platform as a library, for programs and benchmarks: start a lab, add its devices, read what its EST server issued. */
export {
  startLab,
  setDevice,
  readEstIssued,
  type LabApi,
  type LabOptions,
  type RunningLab,
  type EstLabOptions,
  type EstCsrAttrs,
  type EstIssued,
  type EstPki,
} from "./server.js";
export type { LabLimits } from "./intake.js";
