/** The one step runner of the flows (enroll, renew, register), and the events they emit. */

/** A step done: its place in the run, how long it took, and a line saying what it did. */
export interface StepEvent<S extends string = string> {
  type: "step";
  step: S;
  index: number;
  total: number;
  ms: number;
  detail: string;
}

/** A step begins: what a display of progress shows while it runs (`doing`: what it waits for, where that is known before). */
export interface StartEvent<S extends string = string> {
  type: "start";
  step: S;
  index: number;
  total: number;
  doing?: string;
}

/** Something worth saying that does not stop the run. */
export interface NoteEvent {
  type: "note";
  message: string;
}

/** A stage of a broker check that passed (TCP, TLS, CONNACK, PUBACK). */
export interface BrokerEvent {
  type: "broker";
  stage: string;
  detail: string;
  ms: number;
}

/** A command run after new credentials were stored, done. */
export interface HookEvent {
  type: "hook";
  /** The command, as the settings name it. */
  what: string;
  ms: number;
}

/** Progress, emitted as it happens; the CLI renders it, the library never prints. */
export type AgentEvent<S extends string = string> = StartEvent<S> | StepEvent<S> | NoteEvent | BrokerEvent | HookEvent;

/** How long a step took. */
export interface StepTiming<S extends string = string> {
  step: S;
  ms: number;
}

/**
 * Runs the steps of one flow in their fixed order: each checks the interrupt first, says it begins,
 * is timed, and emits its line when done. The first error stops the flow (the step is in the error).
 */
export class StepRunner<S extends string> {
  readonly timings: StepTiming<S>[] = [];

  constructor(
    private readonly order: readonly S[],
    private readonly emit: (event: AgentEvent<S>) => void,
    private readonly signal?: AbortSignal,
  ) {}

  /** Runs `work` as `step`; `detail` says in a line what it did, `doing` what it does meanwhile. */
  async run<T>(step: S, work: () => Promise<T>, detail: (value: T) => string, doing?: string): Promise<T> {
    this.signal?.throwIfAborted();
    const index = this.order.indexOf(step) + 1;
    this.emit({ type: "start", step, index, total: this.order.length, ...(doing ? { doing } : {}) });
    const start = performance.now();
    const value = await work();
    const ms = Math.round(performance.now() - start);
    this.timings.push({ step, ms });
    this.emit({
      type: "step",
      step,
      index,
      total: this.order.length,
      ms,
      detail: detail(value),
    });
    return value;
  }

  /** Emits a note. */
  note(message: string): void {
    this.emit({ type: "note", message });
  }
}
