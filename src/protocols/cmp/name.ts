/** The CMP plug-in's names. */
export const CMP = "cmp";
export const CMP_TITLE = "CMP (RFC 9483, Lightweight CMP)";
