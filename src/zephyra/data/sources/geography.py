"""Geography tables from Debian miscfiles (``/usr/share/misc``): countries and capitals, cities, airports.

Tables become short factual sentences (records) and questions ("What is the capital of Peru?"). The same
package's US founding documents (``/usr/share/state``) are general prose and go to the general corpus.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from ..records import DataError, make_qa, make_record
from .base import Package, Source
from .text import reflow

MISC = Path("/usr/share/misc")
_ISO_ALIAS = {"UK": "GB"}  # cities.dat writes the United Kingdom as UK
STATE = Path("/usr/share/state")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.strip() and not line.startswith("#"):
                yield lineno, line


def read_countries(path: Path) -> list[dict]:
    """``UN code:ISO2:ISO3:name:capital`` lines."""
    out = []
    for lineno, line in _lines(path):
        parts = line.split(":")
        if len(parts) != 5:
            raise DataError(f"{path}:{lineno}: expected 5 ':'-separated fields, got {len(parts)}")
        un, iso2, iso3, name, capital = (p.strip() for p in parts)
        out.append({"un": un, "iso2": iso2, "iso3": iso3, "name": name, "capital": capital})
    return out


def read_cities(path: Path) -> list[dict]:
    """``Key : value`` blocks ended by ``//``."""
    out, block = [], {}
    for _, line in _lines(path):
        if line.strip() == "//":
            if block.get("Name"):
                out.append(block)
            block = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            block[key.strip()] = value.strip()
    return out


def read_airports(path: Path) -> list[dict]:
    """``code:airport:ISO2 country:subdivision:cities`` lines."""
    out = []
    for lineno, line in _lines(path):
        parts = line.split(":")
        if len(parts) != 5:
            raise DataError(f"{path}:{lineno}: expected 5 ':'-separated fields, got {len(parts)}")
        code, airport, country, region, cities = (p.strip() for p in parts)
        out.append({"code": code, "airport": airport, "country": country, "region": region,
                    "cities": cities.replace("|", "; ")})
    return out


class GeographySource(Source):
    name = "miscfiles"
    package = Package("miscfiles", "apt")
    licence = "GPL-2.0-or-later"
    domains = ("geography", "general")

    def files(self) -> list[Path]:
        return [MISC / "countries.gz", MISC / "cities.dat.gz", MISC / "airport.gz"]

    def tables(self) -> tuple[list[dict], list[dict], list[dict]]:
        self.check()
        countries, cities, airports = (read_countries(self.files()[0]), read_cities(self.files()[1]),
                                       read_airports(self.files()[2]))
        return countries, cities, airports

    def records(self, limit: int = 0) -> Iterator[dict]:
        countries, cities, airports = self.tables()
        by_iso = {c["iso2"]: c["name"] for c in countries}
        rows = [(self._country_text(c), f"country:{c['iso2']}") for c in countries]
        rows += [(self._city_text(c, by_iso), f"city:{c['Name']}:{c.get('Country', '')}") for c in cities]
        rows += [(self._airport_text(a, by_iso), f"airport:{a['code']}") for a in airports]
        for text, doc in (rows[:limit] if limit else rows):
            yield make_record(text, "geography", self.name, self.licence, f"miscfiles:{doc}")
        for path in sorted(STATE.glob("*.gz")):  # the US Constitution and Declaration: general prose
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                paras = [p for p in reflow(f.read()).split("\n\n") if len(p.split()) >= 8]
            for i, para in enumerate(paras[:limit] if limit else paras):
                yield make_record(para, "general", self.name, self.licence, f"miscfiles:{path.stem}:{i}")

    @staticmethod
    def _country_text(c: dict) -> str:
        capital = f" Its capital is {c['capital']}." if c["capital"] else ""
        return f"{c['name']} is a country or territory with ISO codes {c['iso2']} and {c['iso3']} " \
               f"(UN number {c['un']}).{capital}"

    @staticmethod
    def _city_text(c: dict, by_iso: dict) -> str:
        country = by_iso.get(_ISO_ALIAS.get(c.get("Country", ""), c.get("Country", "")), c.get("Country", ""))
        where = ", ".join(x for x in (c.get("Region", ""), country) if x)
        pop = f" It has about {int(c['Population']):,} inhabitants." if c.get("Population", "").isdigit() else ""
        pos = ""
        if c.get("Latitude") and c.get("Longitude"):
            pos = f" It lies at latitude {c['Latitude']} and longitude {c['Longitude']}."
        return f"{c['Name']} is a city in {where}.{pop}{pos}"

    @staticmethod
    def _airport_text(a: dict, by_iso: dict) -> str:
        country = by_iso.get(a["country"], a["country"])
        serves = f", serving {a['cities']}" if a["cities"] else ""
        return f"{a['code']} is the code of {a['airport']} airport in {country}{serves}."

    def qa(self, limit: int = 0) -> Iterator[dict]:
        countries, cities, airports = self.tables()
        by_iso = {c["iso2"]: c["name"] for c in countries}
        for c in (countries[:limit] if limit else countries):
            doc, name, cap = f"miscfiles:country:{c['iso2']}", c["name"], c["capital"]
            if cap and "(" not in cap:
                yield make_qa(f"What is the capital of {name}?", f"The capital of {name} is {cap}.", "geography",
                              self.name, doc, name)
                yield make_qa(f"{cap} is the capital of which country?", f"{cap} is the capital of {name}.",
                              "geography", self.name, doc, name)
            yield make_qa(f"What is the two-letter country code of {name}?", f"The ISO code of {name} is "
                          f"{c['iso2']}.", "geography", self.name, doc, name)
        for c in (cities[:limit] if limit else cities):
            if c.get("Country"):
                country = by_iso.get(_ISO_ALIAS.get(c["Country"], c["Country"]), c["Country"])
                where = ", ".join(x for x in (c.get("Region", ""), country) if x)
                yield make_qa(f"In which country is {c['Name']}?", f"{c['Name']} is in {where}.", "geography",
                              self.name, f"miscfiles:city:{c['Name']}:{c['Country']}", c["Name"])
        for a in (airports[:limit] if limit else airports):
            if a["cities"]:
                yield make_qa(f"Which city does the airport code {a['code']} serve?",
                              f"{a['code']} serves {a['cities']} ({by_iso.get(a['country'], a['country'])}).",
                              "geography", self.name, f"miscfiles:airport:{a['code']}", a["code"])
