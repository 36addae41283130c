/**
 * The lab's one entry to @peculiar/x509: its dependency injection needs the Reflect metadata
 * polyfill loaded first, so every lab module imports x509 from here, never from the package.
 */
import "reflect-metadata";

export * from "@peculiar/x509";
