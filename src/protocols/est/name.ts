/** The plug-in's canonical name (apart from the plug-in, so that the client can use it without a cycle). */
export const EST = "est";
/** Its name for people. */
export const EST_TITLE = "EST (RFC 7030)";
