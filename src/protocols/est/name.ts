/** The plug-in's canonical name, and its name for people (apart, so that they load without the client). */
export const EST = "est";
export const EST_TITLE = "EST (RFC 7030)";
