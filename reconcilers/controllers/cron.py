"""Cron schedules as Kubernetes reads them (robfig/cron's standard parser): five fields, or a macro.

Fed by the CronJob controller with spec.schedule and spec.timeZone; gives it the
scheduled times between two instants. Pure: no clock of its own.

    minute hour day-of-month month day-of-week
    "*/15 9-17 * * MON-FRI", "0 0 1 1 *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"

Each field takes `*`, `?` (day fields), numbers, names (JAN-DEC, SUN-SAT, case-insensitive),
ranges `a-b`, steps `*/n`, `a-b/n`, `a/n` (a to the maximum), and comma lists. As in cron,
when both day-of-month and day-of-week are restricted a day matches if either does; when
either is `*` both must. Times are computed on the wall clock of the time zone (IANA name,
from tzdata) and a wall time that does not exist there (a DST gap) is skipped. Not supported:
`@every <duration>` (Kubernetes accepts it; it has no wall-clock meaning to compute from a
creation time here) — it is rejected with a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MONTHS = {n: i for i, n in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                      "DEC"], start=1)}
DAYS = {n: i for i, n in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
SEARCH_YEARS = 5   # as robfig/cron: a schedule with no time in five years never fires ("30 0 30 2 *")


class ScheduleError(ValueError):
    """An unparseable schedule or unknown time zone; the message names the culprit."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool
    tz: ZoneInfo | timezone

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime | None:
        """The first scheduled instant strictly after `after` (an aware datetime), in UTC; None if none in 5 years."""
        local = after.astimezone(self.tz).replace(tzinfo=None)
        t = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            aware = t.replace(tzinfo=self.tz)
            utc = aware.astimezone(timezone.utc)
            if utc.astimezone(self.tz).replace(tzinfo=None) != t:   # not a wall time there (DST gap)
                t += timedelta(minutes=1)
                continue
            if utc <= after:
                t += timedelta(minutes=1)
                continue
            return utc
        return None

    def times_between(self, start: datetime, end: datetime, *, limit: int = 101) -> list[datetime]:
        """Scheduled instants in (start, end], oldest first, at most `limit` of them (the newest kept)."""
        out: list[datetime] = []
        t = self.next_after(start)
        while t is not None and t <= end:
            out.append(t)
            if len(out) > limit:
                out.pop(0)
            t = self.next_after(t)
        return out


def _number(text: str, names: dict[str, int], field: str) -> int:
    up = text.upper()
    if up in names:
        return names[up]
    if not text.isdigit():
        raise ScheduleError(f"failed to parse int from {text}: invalid syntax" if not names else
                            f"failed to parse {field} {text!r}")
    return int(text)


def _field(expr: str, lo: int, hi: int, names: dict[str, int], field: str) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        range_, _, step_text = part.partition("/")
        if range_ in ("*", "?"):
            start, end, is_star = lo, hi, True
        else:
            a, dash, b = range_.partition("-")
            start = _number(a, names, field)
            end = _number(b, names, field) if dash else (hi if step_text else start)
            is_star = False
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"step of range should be a positive number: {part}")
            step = int(step_text)
            if step > 1:
                is_star = False
        if start < lo:
            raise ScheduleError(f"beginning of range ({start}) below minimum ({lo}): {part}")
        if end > hi:
            raise ScheduleError(f"end of range ({end}) above maximum ({hi}): {part}")
        if start > end:
            raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        values.update(range(start, end + 1, step))
        star = star or is_star
    return frozenset(values), star


def zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name}") from None


def parse(schedule: str, time_zone: str | None = None) -> Schedule:
    text = (schedule or "").strip()
    if text.startswith(("CRON_TZ=", "TZ=")):
        tz_part, _, text = text.partition(" ")
        time_zone = tz_part.split("=", 1)[1]
        text = text.strip()
    if text.startswith("@every"):
        raise ScheduleError(f"unsupported schedule {schedule!r}: @every has no wall-clock meaning here")
    if text.startswith("@"):
        if text not in MACROS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        text = MACROS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    minutes, _ = _field(fields[0], 0, 59, {}, "minute")
    hours, _ = _field(fields[1], 0, 23, {}, "hour")
    days, days_star = _field(fields[2], 1, 31, {}, "day of month")
    months, _ = _field(fields[3], 1, 12, MONTHS, "month")
    weekdays, weekdays_star = _field(fields[4], 0, 6, DAYS, "day of week")
    return Schedule(minutes, hours, days, months, weekdays, days_star, weekdays_star, zone(time_zone))
