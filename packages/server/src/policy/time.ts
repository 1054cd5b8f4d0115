// Time windows for policy rules: days of the week and a daily HH:MM range in a time zone.
// A window whose `to` is before `from` crosses midnight; its after-midnight part belongs to
// the day it started on (`fri 22:00-06:00` covers Saturday 02:00).

/** Day names, index = JS `getDay()` (0 = Sunday). */
export const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
/** A day of the week. */
export type DayName = (typeof DAY_NAMES)[number];

/** A normalised time window as written in config (after defaults). */
export interface TimeWindow {
  /** Days the window starts on; all days if absent. */
  readonly days?: readonly DayName[];
  /** Start, `HH:MM`, inclusive. */
  readonly from: string;
  /** End, `HH:MM` (up to `24:00`), exclusive. */
  readonly to: string;
  /** `UTC` or an IANA zone name. */
  readonly tz: string;
}

const HHMM_RE = /^([01]\d|2[0-3]):([0-5]\d)$|^24:00$/;

/** Minutes since midnight for `HH:MM` (`24:00` -> 1440), or `undefined`. */
export function parseHhMm(text: string): number | undefined {
  if (!HHMM_RE.test(text)) return undefined;
  const [h, m] = text.split(':');
  return Number(h) * 60 + Number(m);
}

/** True when `tz` is `UTC` or a time zone this runtime's Intl knows. */
export function isValidTimeZone(tz: string): boolean {
  if (tz === 'UTC') return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const WEEKDAY_INDEX: Readonly<Record<string, number>> = {
  Sun: 0,
  Mon: 1,
  Tue: 2,
  Wed: 3,
  Thu: 4,
  Fri: 5,
  Sat: 6,
};

/** Local day-of-week and minute-of-day of an instant in a zone. */
export type LocalClock = (now: number) => { day: number; minute: number };

/** Builds a {@link LocalClock} for a zone; the Intl formatter is created once. */
export function localClock(tz: string): LocalClock {
  if (tz === 'UTC') {
    return (now) => {
      const d = new Date(now);
      return { day: d.getUTCDay(), minute: d.getUTCHours() * 60 + d.getUTCMinutes() };
    };
  }
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  });
  return (now) => {
    let day = 0;
    let hour = 0;
    let minute = 0;
    for (const p of fmt.formatToParts(now)) {
      if (p.type === 'weekday') day = WEEKDAY_INDEX[p.value] ?? 0;
      else if (p.type === 'hour') hour = Number(p.value) % 24;
      else if (p.type === 'minute') minute = Number(p.value);
    }
    return { day, minute: hour * 60 + minute };
  };
}

/** A compiled window: `(now) => inside?`. */
export type TimeMatcher = (now: number) => boolean;

/** Compiles a validated window. `from == to` is rejected by validation. */
export function compileTimeWindow(w: TimeWindow): TimeMatcher {
  const from = parseHhMm(w.from) ?? 0;
  const to = parseHhMm(w.to) ?? 1440;
  const days = w.days === undefined ? undefined : new Set(w.days.map((d) => DAY_NAMES.indexOf(d)));
  const clock = localClock(w.tz);
  const dayOk = (d: number): boolean => days === undefined || days.has(d);
  return (now) => {
    const { day, minute } = clock(now);
    if (from < to) return minute >= from && minute < to && dayOk(day);
    // Crosses midnight: the evening part starts today, the morning part started yesterday.
    if (minute >= from) return dayOk(day);
    if (minute < to) return dayOk((day + 6) % 7);
    return false;
  };
}
