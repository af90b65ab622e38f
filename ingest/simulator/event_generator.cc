#include "ingest/simulator/event_generator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <unordered_map>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "base/json.h"

namespace chstream::ingest::sim {
namespace {

// ---------------------------------------------------------------------------
// Deterministic randomness (independent of the standard library's
// distributions, so output is identical on every platform).

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Hash(uint64_t a, uint64_t b, uint64_t c = 0) {
  return Mix(a ^ Mix(b ^ Mix(c)));
}

// xoshiro256**.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& s : s_) {
      x += 0x9e3779b97f4a7c15ULL;
      s = Mix(x);
    }
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n); n > 0.
  uint64_t Uniform(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >>
                                 64);
  }
  // Uniform in [lo, hi].
  int Range(int lo, int hi) {
    return lo + static_cast<int>(Uniform(static_cast<uint64_t>(hi - lo + 1)));
  }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return p > 0 && Unit() < p; }
  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Uniform(N)];
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// ---------------------------------------------------------------------------
// A streaming JSON writer that checks, on every key, that the keys of sorted
// objects are written in ascending order (a bug here would silently break
// the Go key order the stream promises, so it aborts).

class JsonOut {
 public:
  JsonOut(std::string* out, bool html_escape)
      : out_(out), html_escape_(html_escape) {}

  void BeginObject(bool sorted = true) {
    BeforeValue();
    out_->push_back('{');
    stack_.push_back(Level{true, sorted, {}});
  }
  void EndObject() {
    out_->push_back('}');
    stack_.pop_back();
  }
  void BeginArray() {
    BeforeValue();
    out_->push_back('[');
    stack_.push_back(Level{true, false, {}});
  }
  void EndArray() {
    out_->push_back(']');
    stack_.pop_back();
  }
  // `key` must outlive the enclosing object (string literals).
  void Key(std::string_view key) {
    Level& level = stack_.back();
#ifndef NDEBUG
    // The upstream writes keys in order; so must the generator. Checked in
    // test builds only: in --config=opt this compare was ~3% of the ingest
    // benchmark's CPU.
    if (level.sorted && !level.first && !(level.last_key < key)) {
      std::fprintf(stderr, "event_generator: key \"%.*s\" after \"%.*s\"\n",
                   static_cast<int>(key.size()), key.data(),
                   static_cast<int>(level.last_key.size()),
                   level.last_key.data());
      std::abort();
    }
#endif
    if (!level.first) out_->push_back(',');
    level.first = false;
    level.last_key = key;
    out_->push_back('"');
    out_->append(key);
    out_->append("\":");
    after_key_ = true;
  }
  void String(std::string_view value) {
    BeforeValue();
    AppendJsonString(out_, value, html_escape_);
  }
  void Int(int64_t value) {
    BeforeValue();
    absl::StrAppend(out_, value);
  }
  void Bool(bool value) {
    BeforeValue();
    out_->append(value ? "true" : "false");
  }
  void Date(absl::CivilDay day) {
    BeforeValue();
    // "YYYY-MM-DD" by hand: fast, and years stay within 0..9999 here.
    const int year = static_cast<int>(std::clamp<int64_t>(day.year(), 0, 9999));
    const int month = day.month();
    const int d = day.day();
    const char buf[12] = {'"',
                          static_cast<char>('0' + year / 1000),
                          static_cast<char>('0' + year / 100 % 10),
                          static_cast<char>('0' + year / 10 % 10),
                          static_cast<char>('0' + year % 10),
                          '-',
                          static_cast<char>('0' + month / 10),
                          static_cast<char>('0' + month % 10),
                          '-',
                          static_cast<char>('0' + d / 10),
                          static_cast<char>('0' + d % 10),
                          '"'};
    out_->append(buf, sizeof(buf));
  }

  void KV(std::string_view key, std::string_view value) {
    Key(key);
    String(value);
  }
  void KInt(std::string_view key, int64_t value) {
    Key(key);
    Int(value);
  }
  void KBool(std::string_view key, bool value) {
    Key(key);
    Bool(value);
  }
  void KDate(std::string_view key, absl::CivilDay day) {
    Key(key);
    Date(day);
  }
  void KObject(std::string_view key) {
    Key(key);
    BeginObject();
  }
  void KArray(std::string_view key) {
    Key(key);
    BeginArray();
  }

 private:
  struct Level {
    bool first;
    bool sorted;
    std::string_view last_key;
  };

  void BeforeValue() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (stack_.empty()) return;
    Level& level = stack_.back();
    if (!level.first) out_->push_back(',');
    level.first = false;
  }

  std::string* out_;
  bool html_escape_;
  bool after_key_ = false;
  absl::InlinedVector<Level, 12> stack_;
};

// ---------------------------------------------------------------------------
// Vocabulary.

constexpr const char* kStreamNames[kNumStreamKinds] = {
    "companies",
    "filings",
    "officers",
    "persons-with-significant-control",
    "charges",
    "insolvency-cases",
    "disqualified-officers",
    "company-exemptions",
    "persons-with-significant-control-statements",
};

constexpr int64_t kFirstTimepoints[kNumStreamKinds] = {
    82'000'000, 168'500'000, 9'000'000, 12'000'000, 2'700'000,
    1'400'000,  2'000,       30'000,    600'000,
};

constexpr const char* kNameWords[] = {
    "ACORN",  "APEX",    "ASHFORD", "BLUE",    "BRIGHT",     "CASTLE",
    "CEDAR",  "CROWN",   "DELTA",   "EAGLE",   "FALCON",     "FC",
    "GREEN",  "HARBOUR", "IRON",    "KESTREL", "LION",       "MAPLE",
    "NORTH",  "OAK",     "PHOENIX", "QUAY",    "RIVER",      "SILVER",
    "SUMMIT", "THAMES",  "VALLEY",  "WILLOW",  "PENNINE",    "SEVERN",
    "CLYDE",  "MERSEY",  "ORCHARD", "BEACON",  "KINGFISHER",
};
constexpr const char* kNameTrades[] = {
    "CONSULTING", "HOLDINGS",     "PROPERTIES",   "TRADING",     "SERVICES",
    "LOGISTICS",  "DIGITAL",      "CONSTRUCTION", "CAPITAL",     "VENTURES",
    "SOLUTIONS",  "KITCHENS",     "MEDIA",        "ENGINEERING", "CARE",
    "RETAIL",     "TECHNOLOGIES", "INVESTMENTS",  "KIOSKS",      "ELECTRICAL",
    "PLUMBING",   "LETTINGS",     "DENTAL",       "FOODS",       "TRANSPORT",
};
constexpr const char* kAccentedNames[] = {
    "CAFÉ ZÜRICH LTD",         "BRASSERIE DE L'ÉTOILE LIMITED",
    "SMÖRGÅSBORD TRADING LTD", "ŁÓDŹ IMPORTS LIMITED",
    "CRÈME BRÛLÉE BAKERY LTD", "NAÏVE DESIGN STUDIO LTD",
    "MÜNCHEN MOTORS UK LTD",   "SÃO PAULO COFFEE COMPANY LIMITED",
    "FJÖRÐUR SEAFOOD LTD",     "ÇA VA BISTRO LIMITED",
};
constexpr const char* kWelshNames[] = {
    "BRAGDY'R GŴYR", "CWMNI TÂN",        "SIOP LLŶN", "GWASANAETHAU ERYRI",
    "CAFFI'R MÔR",   "ADEILADWYR CYMRU", "TŶ COFFI",  "MENTER IAITH DYFFRYN",
};
constexpr const char* kForenames[] = {
    "James",   "Mary",       "Oliver",  "Amelia",  "Mohammed", "Olivia",
    "George",  "Isla",       "Noah",    "Ava",     "Harry",    "Emily",
    "Jack",    "Sophia",     "Charlie", "Grace",   "Priya",    "Wei",
    "Fatima",  "Aleksander", "Rhys",    "Anna",    "David",    "Sarah",
    "Michael", "Claire",     "Thomas",  "Rebecca",
};
constexpr const char* kAccentedForenames[] = {
    "José",  "Zoë",   "Łukasz",    "Siân",  "Bożena", "Søren",
    "Renée", "Ángel", "Gwenllïan", "Chloë", "Björn",  "François",
};
constexpr const char* kSurnames[] = {
    "SMITH",     "JONES",    "WILLIAMS", "TAYLOR",    "BROWN",
    "DAVIES",    "EVANS",    "WILSON",   "THOMAS",    "JOHNSON",
    "ROBERTS",   "PATEL",    "KHAN",     "MORGAN",    "HUGHES",
    "WRIGHT",    "WALKER",   "NGUYEN",   "KOWALSKI",  "O'BRIEN",
    "MACDONALD", "CAMPBELL", "LEWIS",    "GRIFFITHS", "FOSTER",
};
constexpr const char* kAccentedSurnames[] = {
    "MÜLLER", "GONZÁLEZ", "ŻYWIEC", "BJØRNSEN", "LEFÈVRE", "ÓLAFSSON", "NÚÑEZ",
};

struct Town {
  const char* locality;
  const char* postcode_area;
  const char* country;
  const char* region;  // may be empty
};
constexpr Town kTowns[] = {
    {"London", "EC1A", "England", ""},
    {"Manchester", "M1", "England", "Greater Manchester"},
    {"Birmingham", "B1", "England", "West Midlands"},
    {"Leeds", "LS1", "England", "West Yorkshire"},
    {"Glasgow", "G1", "Scotland", ""},
    {"Edinburgh", "EH1", "Scotland", "Midlothian"},
    {"Cardiff", "CF10", "Wales", "South Glamorgan"},
    {"Swansea", "SA1", "Wales", ""},
    {"Aberystwyth", "SY23", "Wales", "Ceredigion"},
    {"Belfast", "BT1", "Northern Ireland", "County Antrim"},
    {"Bristol", "BS1", "England", ""},
    {"Croydon", "CR0", "England", "Surrey"},
    {"Hounslow", "TW3", "England", "Middlesex"},
    {"Bolton", "BL1", "England", "Lancashire"},
    {"Shrewsbury", "SY1", "England", "Shropshire"},
    {"Norwich", "NR1", "England", "Norfolk"},
};
constexpr const char* kStreets[] = {
    "High Street",  "Station Road", "Church Lane",   "Victoria Road",
    "Mill Lane",    "Park Avenue",  "Ingram Street", "Whitchurch Road",
    "Queen Street", "London Road",  "Castle Street", "Heol y Frenhines",
};
constexpr const char* kBuildings[] = {
    "Suite 4f, Ingram House", "Unit 7 Enterprise Park",      "Churchgate House",
    "The Old Bakery",         "Floor 2, Tower Bridge House", "Regus House",
};
constexpr const char* kSicCodes[] = {
    "56290", "62020", "68209", "41100", "43210", "47910", "70229",
    "82990", "96090", "86230", "49410", "64209", "74909", "55100",
};
constexpr const char* kNationalities[] = {
    "British", "Irish", "Polish",   "Indian",  "Romanian",
    "Italian", "Welsh", "Scottish", "Chinese", "German",
};
constexpr const char* kOccupations[] = {
    "Director", "Company Director",   "Accountant", "Engineer",  "Consultant",
    "Retired",  "Software Developer", "Chef",       "Solicitor",
};
constexpr const char* kAccountsTypes[] = {
    "total-exemption-full", "micro-entity", "dormant", "full",
    "unaudited-abridged",   "small",
};
constexpr const char* kNatures[] = {
    "ownership-of-shares-25-to-50-percent",
    "ownership-of-shares-50-to-75-percent",
    "ownership-of-shares-75-to-100-percent",
    "voting-rights-25-to-50-percent",
    "voting-rights-75-to-100-percent",
    "right-to-appoint-and-remove-directors",
    "significant-influence-or-control",
};
constexpr const char* kBoNatures[] = {
    "ownership-of-shares-more-than-25-percent-registered-overseas-entity",
    "voting-rights-more-than-25-percent-registered-overseas-entity",
    "right-to-appoint-and-remove-directors-registered-overseas-entity",
};
constexpr const char* kLenders[] = {
    "Lloyds Bank PLC",        "Barclays Bank UK PLC",
    "HSBC UK Bank PLC",       "National Westminster Bank PLC",
    "Santander UK PLC",       "Together Commercial Finance Limited",
    "Shawbrook Bank Limited",
};
constexpr const char* kStatements[] = {
    "no-individual-or-entity-with-signficant-control",
    "psc-exists-but-not-identified",
    "psc-details-not-confirmed",
    "steps-to-find-psc-not-yet-completed",
    "psc-contacted-but-no-response",
    "psc-has-failed-to-confirm-changed-details",
};
constexpr const char* kLegalPersons[] = {
    "The Crown Estate Commissioners",
    "The Secretary of State for Health",
    "The Welsh Ministers",
    "The Scottish Ministers",
    "The Lord Mayor and Citizens of the City of Westminster",
};
constexpr const char* kCourts[] = {
    "Manchester County Court", "High Court of Justice", "Leeds County Court",
    "Birmingham County Court", "Court of Session",
};

constexpr char kUrlSafe[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string RandomId(Rng& rng, int length) {
  std::string id(static_cast<size_t>(length), 'A');
  for (char& c : id) c = kUrlSafe[rng.Uniform(64)];
  return id;
}

std::string Etag(Rng& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string etag(40, '0');
  for (char& c : etag) c = kHex[rng.Uniform(16)];
  return etag;
}

// A filing transaction id looks like base64("3347524314adiqzkcx").
std::string TransactionId(Rng& rng) {
  std::string raw =
      absl::StrFormat("%010d", rng.Uniform(4'000'000'000ULL)) + "adiqzkcx";
  return absl::Base64Escape(raw);
}

absl::CivilDay AddYears(absl::CivilDay day, int years) {
  return absl::CivilDay(day.year() + years, day.month(), day.day());
}
// Same day of the month `months` later, clamped to the month's end
// (2022-07-31 + 9 months = 2023-04-30).
absl::CivilDay AddMonths(absl::CivilDay day, int months) {
  const absl::CivilMonth target = absl::CivilMonth(day) + months;
  const absl::CivilDay last = absl::CivilDay(target + 1) - 1;
  return absl::CivilDay(target.year(), target.month(),
                        std::min(day.day(), last.day()));
}
absl::CivilDay EndOfMonth(absl::CivilYear year, int month) {
  return absl::CivilDay(year.year(), month + 1, 1) - 1;
}
std::string FormatDay(absl::CivilDay day) {
  return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
}

void WriteAddress(JsonOut& j, Rng& rng, bool with_country, bool with_region) {
  const Town& town = rng.Pick(kTowns);
  const bool building = rng.Chance(0.35);
  const int number = rng.Range(1, 240);
  const char* street = rng.Pick(kStreets);
  j.BeginObject();
  if (building) {
    j.KV("address_line_1", kBuildings[rng.Uniform(std::size(kBuildings))]);
    j.KV("address_line_2", absl::StrCat(number, " ", street));
  } else {
    j.KV("address_line_1", street);
  }
  if (with_country) j.KV("country", town.country);
  j.KV("locality", town.locality);
  j.KV("postal_code", absl::StrCat(town.postcode_area, " ", rng.Range(1, 9),
                                   std::string(1, 'A' + rng.Uniform(26)),
                                   std::string(1, 'A' + rng.Uniform(26))));
  if (!building) j.KV("premises", absl::StrCat(number));
  if (with_region && town.region[0] != '\0') j.KV("region", town.region);
  j.EndObject();
}

struct Person {
  std::string title;
  std::string forename;
  std::string middle_name;
  std::string surname;  // upper case
  int birth_year;
  int birth_month;
  int birth_day;
};

Person MakePerson(Rng& rng, double non_ascii) {
  Person p;
  static constexpr const char* kTitles[] = {"Mr", "Mrs", "Ms", "Dr", "Miss"};
  p.title = rng.Pick(kTitles);
  const bool accented = rng.Chance(non_ascii);
  p.forename = accented ? rng.Pick(kAccentedForenames) : rng.Pick(kForenames);
  if (rng.Chance(0.4)) p.middle_name = rng.Pick(kForenames);
  p.surname = accented && rng.Chance(0.5) ? rng.Pick(kAccentedSurnames)
                                          : rng.Pick(kSurnames);
  p.birth_year = rng.Range(1940, 2003);
  p.birth_month = rng.Range(1, 12);
  p.birth_day = rng.Range(1, 28);
  return p;
}

// "SMITH, James Oliver" (officers).
std::string OfficerName(const Person& p) {
  std::string name = absl::StrCat(p.surname, ", ", p.forename);
  if (!p.middle_name.empty()) absl::StrAppend(&name, " ", p.middle_name);
  return name;
}

// "MÜLLER" -> "Müller", "O'BRIEN" -> "O'Brien": lower-cases every letter
// but the first and those after an apostrophe, for ASCII and for the
// accented capitals the vocabulary uses (Latin-1 supplement, Ł, Ż).
std::string TitleCase(std::string_view upper) {
  std::string out(upper);
  bool keep = true;  // the next letter stays upper case
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(out[i]);
    if (c >= 'A' && c <= 'Z') {
      if (!keep) out[i] = static_cast<char>(c - 'A' + 'a');
      keep = false;
    } else if ((c == 0xC3 || c == 0xC5) && i + 1 < out.size()) {
      unsigned char& next = reinterpret_cast<unsigned char&>(out[i + 1]);
      if (!keep) {
        if (c == 0xC3 && next >= 0x80 && next <= 0x9E && next != 0x97) {
          next = static_cast<unsigned char>(next + 0x20);
        } else if (c == 0xC5 && (next == 0x81 || next == 0xBB)) {
          next = static_cast<unsigned char>(next + 1);
        }
      }
      keep = false;
      ++i;
    } else {
      keep = c == '\'';
    }
  }
  return out;
}

// "Mr James Oliver Smith" (PSCs).
std::string PscName(const Person& p) {
  std::string surname = TitleCase(p.surname);
  std::string name = absl::StrCat(p.title, " ", p.forename);
  if (!p.middle_name.empty()) absl::StrAppend(&name, " ", p.middle_name);
  absl::StrAppend(&name, " ", surname);
  return name;
}

// ---------------------------------------------------------------------------
// The company pool, shared by all streams of one seed.

struct CompanyBase {
  std::string number;
  std::string type;
  std::string jurisdiction;
  std::string name;
  bool newco = false;      // incorporated at its first event
  absl::CivilDay created;  // when !newco
  std::vector<std::string> sic;
};

std::string CompanyNameFor(Rng& rng, const std::string& type, bool welsh) {
  std::string stem;
  if (welsh) {
    return absl::StrCat(rng.Pick(kWelshNames), " CYFYNGEDIG");
  }
  if (rng.Chance(0.1)) {
    stem = absl::StrCat(rng.Pick(kSurnames), " & ", rng.Pick(kSurnames));
  } else {
    stem = absl::StrCat(rng.Pick(kNameWords), " ", rng.Pick(kNameTrades));
  }
  if (type == "plc") return stem + " PLC";
  if (type == "llp") return stem + " LLP";
  if (type == "limited-partnership") return stem + " LP";
  if (type == "oversea-company") {
    static constexpr const char* kForeign[] = {" GMBH", " INC.", " B.V.",
                                               " S.A.R.L."};
    return stem + rng.Pick(kForeign);
  }
  if (type == "registered-overseas-entity") {
    static constexpr const char* kOe[] = {" S.A.", " LLC", " LIMITED (BVI)"};
    return stem + rng.Pick(kOe);
  }
  return stem + (rng.Chance(0.5) ? " LTD" : " LIMITED");
}

CompanyBase MakeCompanyBase(uint64_t seed, int slot, int generation,
                            double non_ascii) {
  Rng rng(Hash(seed, 0xc0ffee,
               static_cast<uint64_t>(slot) * 1000003 +
                   static_cast<uint64_t>(generation)));
  CompanyBase c;
  c.newco = rng.Chance(0.3);
  const uint64_t u = rng.Uniform(100);
  std::string prefix;
  if (u < 78) {
    prefix = "";
  } else if (u < 86) {
    prefix = "SC";
  } else if (u < 89) {
    prefix = "NI";
  } else if (u < 93) {
    prefix = "OC";
  } else if (u < 95) {
    prefix = "LP";
  } else if (u < 97) {
    prefix = "FC";
  } else {
    prefix = "OE";
  }
  int64_t serial = 0;
  if (prefix.empty()) {
    // New incorporations get the next numbers (16,000,000 up).
    serial = c.newco ? 16'000'000 + static_cast<int64_t>(rng.Uniform(800'000))
                     : 1 + static_cast<int64_t>(rng.Uniform(15'999'999));
    c.number = absl::StrFormat("%08d", serial);
  } else {
    c.number = absl::StrFormat("%s%06d", prefix, 1 + rng.Uniform(999'999));
  }
  bool welsh = false;
  const bool accented = rng.Chance(non_ascii);
  if (prefix.empty() || prefix == "SC" || prefix == "NI") {
    const uint64_t t = rng.Uniform(100);
    c.type = t < 85   ? "ltd"
             : t < 88 ? "plc"
             : t < 90 ? "private-unlimited"
                      : "private-limited-guarant-nsc";
    c.jurisdiction = prefix == "SC"   ? "scotland"
                     : prefix == "NI" ? "northern-ireland"
                                      : "england-wales";
    if (accented && prefix.empty() && c.type == "ltd" && rng.Chance(0.5)) {
      welsh = true;
      c.jurisdiction = "wales";
    }
  } else if (prefix == "OC") {
    c.type = "llp";
    c.jurisdiction = "england-wales";
  } else if (prefix == "LP") {
    c.type = "limited-partnership";
    c.jurisdiction = "england-wales";
  } else if (prefix == "FC") {
    c.type = "oversea-company";
    c.jurisdiction = "noneu";
  } else {
    c.type = "registered-overseas-entity";
    c.jurisdiction = "united-kingdom";
  }
  if (accented && !welsh && c.type == "ltd") {
    c.name = rng.Pick(kAccentedNames);
  } else {
    c.name = CompanyNameFor(rng, c.type, welsh);
  }
  if (serial > 0 && !c.newco) {
    // England & Wales numbers are issued in order; roughly the year each
    // millionth number was reached.
    static constexpr int kYearOfMillion[] = {1900, 1970, 1985, 1995, 2000, 2004,
                                             2006, 2009, 2012, 2014, 2016, 2017,
                                             2019, 2021, 2022, 2024, 2025};
    const int64_t million = serial / 1'000'000;
    const int64_t from = kYearOfMillion[million];
    const int64_t to = kYearOfMillion[million + 1];
    c.created = absl::CivilDay(from, 1, 1) +
                (serial % 1'000'000) * (to - from) * 365 / 1'000'000;
  } else {
    c.created = absl::CivilDay(1965, 1, 1) +
                static_cast<int64_t>(rng.Uniform(21'550));  // to ~2023
  }
  const int sic_count = rng.Chance(0.2) ? 2 : 1;
  for (int i = 0; i < sic_count; ++i) c.sic.push_back(rng.Pick(kSicCodes));
  std::sort(c.sic.begin(), c.sic.end());
  c.sic.erase(std::unique(c.sic.begin(), c.sic.end()), c.sic.end());
  return c;
}

// ---------------------------------------------------------------------------

struct PreviousName {
  std::string name;
  absl::CivilDay effective_from;
  absl::CivilDay ceased_on;
};

struct CompanyState {
  bool initialised = false;
  bool emitted = false;
  bool deleted = false;
  int generation = 0;
  CompanyBase base;
  std::string name;
  std::vector<PreviousName> previous_names;
  absl::CivilDay name_since;
  std::string status = "active";
  std::string status_detail;
  absl::CivilDay created;
  std::optional<absl::CivilDay> ceased;
  int ard_month = 3;
  std::optional<absl::CivilDay> last_accounts;
  std::string last_accounts_type;
  std::optional<absl::CivilDay> last_cs;
  uint64_t address_seed = 0;
  bool has_charges = false;
  bool has_insolvency_history = false;
  std::string etag;
};

// A resource on one of the other streams (an appointment, a charge, ...).
struct Resource {
  uint64_t seed = 0;  // stable attributes are drawn from Rng(seed)
  int slot = 0;       // company pool slot
  std::string company_number;
  std::string id;
  int subtype = 0;
  int version = 0;
  absl::CivilDay born;
  std::optional<absl::CivilDay> ended;
  bool large = false;
};

struct RecentEvent {
  std::string uri;
  std::string body;  // "{...,"data":{...},"  (everything before "event")
  std::string type;
  std::string fields_changed;  // JSON array text or empty
};

// Changes whenever the resource's content does.
std::string ResourceEtag(const Resource& r) {
  const uint64_t ended =
      r.ended ? static_cast<uint64_t>(*r.ended - absl::CivilDay(1970, 1, 1)) + 1
              : 0;
  Rng rng(Hash(r.seed, static_cast<uint64_t>(r.version), ended));
  return Etag(rng);
}

const char* PscSegment(int subtype) {
  static constexpr const char* kSegments[] = {
      "individual",
      "corporate-entity",
      "legal-person",
      "super-secure",
      "individual-beneficial-owner",
      "corporate-entity-beneficial-owner",
      "legal-person-beneficial-owner",
      "super-secure-beneficial-owner",
  };
  return kSegments[subtype];
}
const char* PscResourceKind(int subtype) {
  static constexpr const char* kKinds[] = {
      "company-psc-individual",
      "company-psc-corporate",
      "company-psc-legal",
      "company-psc-supersecure",
      "individual-beneficial-owner",
      "corporate-entity-beneficial-owner",
      "legal-person-beneficial-owner",
      "super-secure-beneficial-owner",
  };
  return kKinds[subtype];
}
const char* PscDataKind(int subtype) {
  static constexpr const char* kKinds[] = {
      "individual-person-with-significant-control",
      "corporate-entity-person-with-significant-control",
      "legal-person-person-with-significant-control",
      "super-secure-person-with-significant-control",
      "individual-beneficial-owner",
      "corporate-entity-beneficial-owner",
      "legal-person-beneficial-owner",
      "super-secure-beneficial-owner",
  };
  return kKinds[subtype];
}

}  // namespace

// ---------------------------------------------------------------------------

std::string_view StreamName(StreamKind kind) {
  return kStreamNames[static_cast<int>(kind)];
}

std::optional<StreamKind> StreamKindFromName(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  for (int i = 0; i < kNumStreamKinds; ++i) {
    if (name == kStreamNames[i]) return static_cast<StreamKind>(i);
  }
  return std::nullopt;
}

int64_t DefaultFirstTimepoint(StreamKind kind) {
  return kFirstTimepoints[static_cast<int>(kind)];
}

struct EventGenerator::State {
  State(StreamKind kind, uint64_t seed, GeneratorOptions options)
      : kind(kind),
        seed(seed),
        options(std::move(options)),
        rng(Hash(seed, 0x5747, static_cast<uint64_t>(kind) + 1)) {
    if (this->options.company_pool_size < 1)
      this->options.company_pool_size = 1;
    if (this->options.published_at_formats.empty()) {
      switch (kind) {
        case StreamKind::kCharges:
          formats = {PublishedAtFormat::kPlainUtc, PublishedAtFormat::kMicrosZ};
          break;
        case StreamKind::kInsolvency:
        case StreamKind::kDisqualifiedOfficers:
          formats = {PublishedAtFormat::kMicrosOffset};
          break;
        default:
          formats = {PublishedAtFormat::kPlainUtc};
      }
    } else {
      formats = this->options.published_at_formats;
    }
  }

  // One event. Fills `body` (envelope up to and including the comma before
  // "event"), `type` and `fields_changed`.
  void Generate(absl::CivilDay today);

  // Per stream.
  void Companies(absl::CivilDay today);
  void WriteProfile(JsonOut& j, const CompanyState& c, absl::CivilDay today,
                    bool large);
  void ResourceEvent(absl::CivilDay today);
  void WriteResource(JsonOut& j, const Resource& r);
  std::string ResourceUri(const Resource& r) const;
  const char* ResourceKindFor(const Resource& r) const;
  Resource NewResource(absl::CivilDay today);

  int PickSlot() {
    return static_cast<int>(
        rng.Uniform(static_cast<uint64_t>(options.company_pool_size)));
  }
  // A slot whose company is a registered overseas entity (for beneficial
  // owners), or any slot when none is found nearby.
  int PickOverseasSlot() {
    const int start = PickSlot();
    for (int i = 0; i < std::min(options.company_pool_size, 400); ++i) {
      const int slot = (start + i) % options.company_pool_size;
      if (BaseFor(slot).type == "registered-overseas-entity") return slot;
    }
    return start;
  }
  const CompanyBase& BaseFor(int slot) {
    auto it = base_cache.find(slot);
    if (it == base_cache.end()) {
      it = base_cache
               .emplace(slot, MakeCompanyBase(seed, slot, 0,
                                              options.non_ascii_probability))
               .first;
    }
    return it->second;
  }

  void BeginEnvelope(JsonOut& j, std::string_view resource_kind,
                     std::string_view uri, std::string_view id) {
    j.BeginObject(/*sorted=*/false);
    j.KV("resource_kind", resource_kind);
    j.KV("resource_uri", uri);
    j.KV("resource_id", id);
  }

  StreamKind kind;
  uint64_t seed;
  GeneratorOptions options;
  std::vector<PublishedAtFormat> formats;
  Rng rng;

  std::vector<CompanyState> companies;  // companies stream only
  std::unordered_map<int, CompanyBase> base_cache;
  std::vector<Resource> resources;  // the other streams
  std::deque<RecentEvent> recent;

  // Output of Generate().
  std::string uri;
  std::string body;
  std::string type;
  std::string fields_changed;
};

EventGenerator::EventGenerator(StreamKind kind, uint64_t seed,
                               GeneratorOptions options)
    : kind_(kind),
      last_timepoint_((options.first_timepoint > 0
                           ? options.first_timepoint
                           : DefaultFirstTimepoint(kind)) -
                      1),
      state_(std::make_unique<State>(kind, seed, std::move(options))) {}

EventGenerator::~EventGenerator() = default;

void EventGenerator::SkipTimepoints(int64_t count) {
  if (count > 0) pending_skip_ += count;
}

int64_t EventGenerator::Next(absl::Time published_at, std::string* line) {
  State& s = *state_;
  const absl::CivilDay today =
      absl::ToCivilDay(published_at, absl::UTCTimeZone());

  // Timepoint: +1, or a gap.
  int64_t step = 1;
  if (s.rng.Chance(s.options.gap_probability) && s.options.max_gap > 0) {
    step += 1 + static_cast<int64_t>(
                    s.rng.Uniform(static_cast<uint64_t>(s.options.max_gap)));
  }
  step += pending_skip_;
  pending_skip_ = 0;
  last_timepoint_ += step;

  // Either a duplicate of a recent event (its resource's latest state) or a
  // new one.
  const RecentEvent* duplicate = nullptr;
  if (!s.recent.empty() && s.rng.Chance(s.options.duplicate_probability)) {
    duplicate = &s.recent[s.rng.Uniform(s.recent.size())];
  } else {
    s.Generate(today);
  }
  const std::string& body = duplicate ? duplicate->body : s.body;
  const std::string& type = duplicate ? duplicate->type : s.type;
  const std::string& fields_changed =
      duplicate ? duplicate->fields_changed : s.fields_changed;

  line->clear();
  line->reserve(body.size() + 128);
  line->append(body);
  line->append("\"event\":{");
  if (!fields_changed.empty()) {
    line->append("\"fields_changed\":");
    line->append(fields_changed);
    line->push_back(',');
  }
  absl::StrAppend(line, "\"timepoint\":", last_timepoint_,
                  ",\"published_at\":\"");
  switch (s.formats[s.rng.Uniform(s.formats.size())]) {
    case PublishedAtFormat::kPlainUtc:
      line->append(absl::FormatTime("%Y-%m-%dT%H:%M:%S", published_at,
                                    absl::UTCTimeZone()));
      break;
    case PublishedAtFormat::kMicrosZ:
      line->append(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", published_at,
                                    absl::UTCTimeZone()));
      break;
    case PublishedAtFormat::kMicrosOffset:
      line->append(absl::FormatTime("%Y-%m-%dT%H:%M:%E6S%Ez", published_at,
                                    absl::FixedTimeZone(3600)));
      break;
  }
  absl::StrAppend(line, "\",\"type\":\"", type, "\"}}");

  if (duplicate == nullptr) {
    // Remember it as its resource's latest state.
    for (auto it = s.recent.begin(); it != s.recent.end(); ++it) {
      if (it->uri == s.uri) {
        s.recent.erase(it);
        break;
      }
    }
    if (s.body.size() < 16 * 1024) {  // never duplicate the large ones
      s.recent.push_back(RecentEvent{s.uri, s.body, s.type, s.fields_changed});
      if (s.recent.size() > 32) s.recent.pop_front();
    }
  }
  return last_timepoint_;
}

void EventGenerator::State::Generate(absl::CivilDay today) {
  body.clear();
  fields_changed.clear();
  type = "changed";
  if (kind == StreamKind::kCompanies) {
    Companies(today);
  } else {
    ResourceEvent(today);
  }
}

// ---------------------------------------------------------------------------
// companies: company-profile

void EventGenerator::State::Companies(absl::CivilDay today) {
  if (companies.empty()) {
    companies.resize(static_cast<size_t>(options.company_pool_size));
  }
  const int slot = PickSlot();
  CompanyState& c = companies[static_cast<size_t>(slot)];
  if (!c.initialised || c.deleted) {
    const int generation = c.initialised ? c.generation + 1 : 0;
    c = CompanyState();
    c.initialised = true;
    c.generation = generation;
    c.base =
        MakeCompanyBase(seed, slot, generation, options.non_ascii_probability);
    c.name = c.base.name;
    Rng setup(Hash(seed, 0xadd,
                   static_cast<uint64_t>(slot) * 7919 +
                       static_cast<uint64_t>(generation)));
    c.address_seed = setup.Next();
    c.created = c.base.newco ? today : c.base.created;
    c.name_since = c.created;
    c.ard_month =
        c.base.newco ? static_cast<int>(c.created.month()) : setup.Range(1, 12);
    if (!c.base.newco) {
      // An established company: accounts and confirmation statements filed.
      absl::CivilDay ard =
          EndOfMonth(absl::CivilYear(today.year() - 1), c.ard_month);
      if (ard + 270 > today) ard = AddYears(ard, -1);
      if (ard > c.created) {
        c.last_accounts = ard;
        c.last_accounts_type = setup.Pick(kAccountsTypes);
      }
      absl::CivilDay cs =
          absl::CivilDay(today.year(), c.created.month(), c.created.day());
      if (cs > today - 14) cs = AddYears(cs, -1);
      if (cs > c.created) c.last_cs = cs;
      c.has_charges = setup.Chance(0.15);
    }
    Rng etag_rng(c.address_seed);
    c.etag = Etag(etag_rng);
  }

  const bool deletion = !options.profile_only && c.emitted &&
                        rng.Chance(options.delete_probability);
  const bool large = !options.profile_only && !deletion &&
                     rng.Chance(options.large_event_probability);

  if (deletion) {
    type = "deleted";
    c.deleted = true;
  } else if (c.emitted) {
    const uint64_t op = rng.Uniform(100);
    bool changed = true;
    if (op < 30) {
      changed = false;  // re-published unchanged
    } else if (op < 50) {
      // Accounts filed for the next period (if it has ended).
      absl::CivilDay next =
          c.last_accounts
              ? AddYears(*c.last_accounts, 1)
              : EndOfMonth(absl::CivilYear(c.created.year() + 1), c.ard_month);
      if (next < today) {
        c.last_accounts = next;
        c.last_accounts_type = rng.Pick(kAccountsTypes);
      } else {
        changed = false;
      }
    } else if (op < 65) {
      absl::CivilDay next =
          c.last_cs ? AddYears(*c.last_cs, 1) : AddYears(c.created, 1);
      if (next <= today) {
        c.last_cs = next;
      } else {
        changed = false;
      }
    } else if (op < 75) {
      c.address_seed = rng.Next();
    } else if (op < 83) {
      if (c.status == "active" && !options.profile_only) {
        c.previous_names.insert(c.previous_names.begin(),
                                PreviousName{c.name, c.name_since, today});
        if (c.previous_names.size() > 6) c.previous_names.pop_back();
        c.name = CompanyNameFor(rng, c.base.type, false);
        c.name_since = today;
      } else {
        changed = false;
      }
    } else if (op < 93) {
      if (options.profile_only) {
        changed = false;
      } else if (c.status == "active" && c.status_detail.empty()) {
        if (rng.Chance(0.7)) {
          c.status_detail = "active-proposal-to-strike-off";
        } else {
          c.status = "liquidation";
          c.has_insolvency_history = true;
        }
      } else if (c.status == "active") {
        c.status = "dissolved";
        c.status_detail.clear();
        c.ceased = today;
      } else {
        changed = false;
      }
    } else {
      changed = !c.has_charges;
      c.has_charges = true;
    }
    if (changed) c.etag = Etag(rng);
  }
  c.emitted = true;

  uri = absl::StrCat("/company/", c.base.number);
  JsonOut j(&body, options.go_html_escape);
  BeginEnvelope(j, "company-profile", uri, c.base.number);
  if (!(deletion && rng.Chance(options.deleted_without_data_probability))) {
    j.Key("data");
    WriteProfile(j, c, today, large);
  }
  body.push_back(',');
}

void EventGenerator::State::WriteProfile(JsonOut& j, const CompanyState& c,
                                         absl::CivilDay today, bool large) {
  const bool dissolved = c.status == "dissolved";
  const std::string& n = c.base.number;
  j.BeginObject();

  // accounts
  j.KObject("accounts");
  const absl::CivilDay ard = EndOfMonth(absl::CivilYear(2000), c.ard_month);
  j.KObject("accounting_reference_date");
  j.KV("day", absl::StrFormat("%02d", ard.day()));
  j.KV("month", absl::StrFormat("%02d", ard.month()));
  j.EndObject();
  j.KObject("last_accounts");
  if (c.last_accounts) {
    j.KDate("made_up_to", *c.last_accounts);
    j.KDate("period_end_on", *c.last_accounts);
    j.KDate("period_start_on", AddYears(*c.last_accounts, -1) + 1);
    j.KV("type", c.last_accounts_type);
  } else {
    j.KV("type", "null");
  }
  j.EndObject();
  const absl::CivilDay period_start =
      c.last_accounts ? *c.last_accounts + 1 : c.created;
  const absl::CivilDay period_end =
      c.last_accounts
          ? AddYears(*c.last_accounts, 1)
          : EndOfMonth(absl::CivilYear(c.created.year() + 1), c.ard_month);
  const absl::CivilDay due =
      c.last_accounts ? AddMonths(period_end, 9) : AddMonths(c.created, 21);
  const bool accounts_overdue = !dissolved && due < today;
  j.KObject("next_accounts");
  j.KDate("due_on", due);
  if (accounts_overdue) j.KBool("overdue", true);
  j.KDate("period_end_on", period_end);
  j.KDate("period_start_on", period_start);
  j.EndObject();
  j.KDate("next_due", due);
  j.KDate("next_made_up_to", period_end);
  if (accounts_overdue) j.KBool("overdue", true);
  j.EndObject();

  j.KBool("can_file", !dissolved);
  j.KV("company_name", c.name);
  j.KV("company_number", n);
  j.KV("company_status", c.status);
  if (!c.status_detail.empty()) j.KV("company_status_detail", c.status_detail);

  j.KObject("confirmation_statement");
  if (c.last_cs) j.KDate("last_made_up_to", *c.last_cs);
  const absl::CivilDay cs_next =
      c.last_cs ? AddYears(*c.last_cs, 1) : AddYears(c.created, 1);
  j.KDate("next_due", cs_next + 14);
  j.KDate("next_made_up_to", cs_next);
  if (!dissolved && cs_next + 14 < today) j.KBool("overdue", true);
  j.EndObject();

  if (c.ceased) j.KDate("date_of_cessation", *c.ceased);
  j.KDate("date_of_creation", c.created);
  j.KV("etag", c.etag);
  if (c.has_charges) j.KBool("has_charges", true);
  if (c.has_insolvency_history) j.KBool("has_insolvency_history", true);
  j.KV("jurisdiction", c.base.jurisdiction);

  j.KObject("links");
  if (c.has_charges) j.KV("charges", absl::StrCat("/company/", n, "/charges"));
  j.KV("filing_history", absl::StrCat("/company/", n, "/filing-history"));
  if (c.has_insolvency_history) {
    j.KV("insolvency", absl::StrCat("/company/", n, "/insolvency"));
  }
  j.KV("officers", absl::StrCat("/company/", n, "/officers"));
  j.KV("persons_with_significant_control",
       absl::StrCat("/company/", n, "/persons-with-significant-control"));
  j.KV("self", absl::StrCat("/company/", n));
  j.EndObject();

  if (!c.previous_names.empty() || large) {
    j.KArray("previous_company_names");
    for (const PreviousName& p : c.previous_names) {
      j.BeginObject();
      j.KDate("ceased_on", p.ceased_on);
      j.KDate("effective_from", p.effective_from);
      j.KV("name", p.name);
      j.EndObject();
    }
    if (large) {
      // ~100 KB: a (fictional) company renamed a thousand times.
      absl::CivilDay day = c.created;
      for (int i = 0; i < 1100; ++i) {
        j.BeginObject();
        j.KDate("ceased_on", day + 1);
        j.KDate("effective_from", day);
        j.KV("name", absl::StrCat(kNameWords[i % std::size(kNameWords)], " ",
                                  kNameTrades[i % std::size(kNameTrades)],
                                  " NO. ", i + 1, " LIMITED"));
        j.EndObject();
        day = day - 1;
      }
    }
    j.EndArray();
  }

  j.Key("registered_office_address");
  Rng address_rng(c.address_seed);
  WriteAddress(j, address_rng, /*with_country=*/true, /*with_region=*/true);

  j.KArray("sic_codes");
  for (const std::string& sic : c.base.sic) j.String(sic);
  j.EndArray();
  j.KV("type", c.base.type);
  j.EndObject();
}

// ---------------------------------------------------------------------------
// The other eight streams: a bounded pool of live resources that are created,
// changed and deleted.

Resource EventGenerator::State::NewResource(absl::CivilDay today) {
  Resource r;
  r.seed = rng.Next();
  Rng stable(r.seed);
  switch (kind) {
    case StreamKind::kPsc: {
      const uint64_t u = stable.Uniform(100);
      r.subtype = u < 70   ? 0
                  : u < 82 ? 1
                  : u < 86 ? 2
                  : u < 88 ? 3
                  : u < 95 ? 4
                  : u < 98 ? 5
                  : u < 99 ? 6
                           : 7;
      r.slot = r.subtype >= 4 ? PickOverseasSlot() : PickSlot();
      break;
    }
    case StreamKind::kDisqualifiedOfficers:
      r.subtype = stable.Chance(0.9) ? 0 : 1;  // natural / corporate
      r.slot = PickSlot();
      break;
    case StreamKind::kOfficers:
      r.subtype = stable.Chance(0.93) ? 0 : 1;  // person / corporate
      r.slot = PickSlot();
      break;
    default:
      r.slot = PickSlot();
  }
  r.company_number = BaseFor(r.slot).number;
  switch (kind) {
    case StreamKind::kInsolvency:
    case StreamKind::kExemptions:
      r.id = r.company_number;
      break;
    case StreamKind::kFilings:
      r.id = TransactionId(stable);
      break;
    default:
      r.id = RandomId(stable, 27);
  }
  // New filings, appointments, statements... are dated today; charges and
  // disqualifications have some history.
  r.born = today - static_cast<int>(kind == StreamKind::kCharges
                                        ? stable.Uniform(3000)
                                        : stable.Uniform(3));
  r.large = kind == StreamKind::kCharges &&
            rng.Chance(options.large_event_probability);
  return r;
}

std::string EventGenerator::State::ResourceUri(const Resource& r) const {
  const std::string& n = r.company_number;
  switch (kind) {
    case StreamKind::kFilings:
      return absl::StrCat("/company/", n, "/filing-history/", r.id);
    case StreamKind::kOfficers:
      return absl::StrCat("/company/", n, "/appointments/", r.id);
    case StreamKind::kPsc:
      return absl::StrCat("/company/", n, "/persons-with-significant-control/",
                          PscSegment(r.subtype), "/", r.id);
    case StreamKind::kCharges:
      return absl::StrCat("/company/", n, "/charges/", r.id);
    case StreamKind::kInsolvency:
      return absl::StrCat("/company/", n, "/insolvency");
    case StreamKind::kDisqualifiedOfficers:
      return absl::StrCat("/disqualified-officers/",
                          r.subtype == 0 ? "natural" : "corporate", "/", r.id);
    case StreamKind::kExemptions:
      // No leading slash, as in CH's company-exemptions-data-api.
      return absl::StrCat("company/", n, "/exemptions");
    case StreamKind::kPscStatements:
      return absl::StrCat("/company/", n,
                          "/persons-with-significant-control-statements/",
                          r.id);
    case StreamKind::kCompanies:
      break;
  }
  return absl::StrCat("/company/", n);
}

const char* EventGenerator::State::ResourceKindFor(const Resource& r) const {
  switch (kind) {
    case StreamKind::kFilings:
      return "filing-history";
    case StreamKind::kOfficers:
      return "company-officers";
    case StreamKind::kPsc:
      return PscResourceKind(r.subtype);
    case StreamKind::kCharges:
      return "company-charges";
    case StreamKind::kInsolvency:
      return "company-insolvency";
    case StreamKind::kDisqualifiedOfficers:
      return r.subtype == 0 ? "disqualified-officer-natural"
                            : "disqualified-officer-corporate";
    case StreamKind::kExemptions:
      return "company-exemptions";
    case StreamKind::kPscStatements:
      return "persons-with-significant-control-statement";
    case StreamKind::kCompanies:
      break;
  }
  return "company-profile";
}

void EventGenerator::State::ResourceEvent(absl::CivilDay today) {
  constexpr size_t kPoolCap = 400;
  const bool create = resources.empty() ||
                      (resources.size() < kPoolCap && rng.Chance(0.5)) ||
                      rng.Chance(0.2);
  size_t index;
  bool deletion = false;
  if (create) {
    if (resources.size() >= kPoolCap) {
      resources.erase(resources.begin());  // forget the oldest
    }
    resources.push_back(NewResource(today));
    index = resources.size() - 1;
  } else {
    index = rng.Uniform(resources.size());
    Resource& r = resources[index];
    deletion = rng.Chance(options.delete_probability);
    if (!deletion) {
      // A change.
      switch (kind) {
        case StreamKind::kFilings:
          if (r.version == 0) {
            // The document became available.
            fields_changed = "[\"links.document_metadata\"]";
          }
          r.version = 1;
          break;
        case StreamKind::kOfficers:
        case StreamKind::kPsc:
        case StreamKind::kPscStatements:
        case StreamKind::kExemptions:
          if (!r.ended && rng.Chance(0.5)) {
            r.ended = today;
          } else {
            ++r.version;
          }
          break;
        case StreamKind::kCharges:
          if (!r.ended) r.ended = today;  // satisfied
          ++r.version;
          break;
        default:
          r.version = std::min(r.version + 1, 4);
      }
    }
  }
  Resource r = resources[index];
  if (deletion) {
    resources.erase(resources.begin() + static_cast<ptrdiff_t>(index));
    type = "deleted";
  }
  uri = ResourceUri(r);
  JsonOut j(&body, options.go_html_escape);
  BeginEnvelope(j, ResourceKindFor(r), uri, r.id);
  if (!(deletion && rng.Chance(options.deleted_without_data_probability))) {
    j.Key("data");
    WriteResource(j, r);
  }
  body.push_back(',');
}

void EventGenerator::State::WriteResource(JsonOut& j, const Resource& r) {
  Rng s(r.seed);  // stable attributes
  const std::string& n = r.company_number;
  const double non_ascii = options.non_ascii_probability;
  j.BeginObject();
  switch (kind) {
    case StreamKind::kFilings: {
      struct Form {
        const char* type;
        const char* category;
        const char* subcategory;
        const char* description;
      };
      static constexpr Form kForms[] = {
          {"AA", "accounts", "",
           "accounts-with-accounts-type-total-exemption-full"},
          {"AA", "accounts", "", "accounts-with-accounts-type-micro-entity"},
          {"CS01", "confirmation-statement", "",
           "confirmation-statement-with-no-updates"},
          {"AP01", "officers", "appointments",
           "appoint-person-director-company-with-name-date"},
          {"TM01", "officers", "termination",
           "termination-director-company-with-name-termination-date"},
          {"CH01", "officers", "change",
           "change-person-director-company-with-change-date"},
          {"AD01", "address", "",
           "change-registered-office-address-company-with-date-old-address-new-"
           "address"},
          {"NEWINC", "incorporation", "", "incorporation-company"},
          {"PSC01", "persons-with-significant-control", "",
           "notification-of-a-person-with-significant-control"},
          {"MR01", "mortgage", "create",
           "mortgage-create-with-deed-with-charge-number-charge-creation-date"},
          {"SH01", "capital", "allotments", "capital-allotment-shares"},
          {"GAZ1", "gazette", "", "gazette-notice-compulsory"},
      };
      const Form& form = s.Pick(kForms);
      const std::string ft = form.type;
      const Person person = MakePerson(s, non_ascii);
      const bool paper = s.Chance(0.1);
      std::string barcode(8, 'X');
      for (size_t i = 1; i < barcode.size(); ++i) {
        barcode[i] = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"[s.Uniform(34)];
      }
      if (paper) barcode[0] = 'A';
      j.KV("barcode", barcode);
      j.KV("category", form.category);
      j.KDate("date", r.born);
      j.KV("description", form.description);
      if (ft == "AA" || ft == "CS01") {
        j.KObject("description_values");
        j.KDate("made_up_date", ft == "AA" ? r.born - 200 : r.born - 5);
        j.EndObject();
      } else if (ft == "AP01") {
        j.KObject("description_values");
        j.KDate("appointment_date", r.born - 2);
        j.KV("officer_name", PscName(person).substr(person.title.size() + 1));
        j.EndObject();
      } else if (ft == "TM01") {
        j.KObject("description_values");
        j.KV("officer_name", PscName(person).substr(person.title.size() + 1));
        j.KDate("termination_date", r.born - 3);
        j.EndObject();
      } else if (ft == "CH01") {
        j.KObject("description_values");
        j.KDate("change_date", r.born - 1);
        j.KV("officer_name", PscName(person).substr(person.title.size() + 1));
        j.EndObject();
      } else if (ft == "AD01") {
        j.KObject("description_values");
        j.KDate("change_date", r.born);
        j.KV("new_address", absl::StrCat(s.Range(1, 99), " ", s.Pick(kStreets),
                                         ", ", s.Pick(kTowns).locality));
        j.KV("old_address", absl::StrCat(s.Range(1, 99), " ", s.Pick(kStreets),
                                         ", ", s.Pick(kTowns).locality));
        j.EndObject();
      } else if (ft == "PSC01") {
        j.KObject("description_values");
        j.KDate("notification_date", r.born - 4);
        j.KV("psc_name", PscName(person).substr(person.title.size() + 1));
        j.EndObject();
      } else if (ft == "MR01") {
        j.KObject("description_values");
        j.KDate("charge_creation_date", r.born - 6);
        j.KV("charge_number",
             absl::StrCat(n, absl::StrFormat("%04d", s.Range(1, 12))));
        j.EndObject();
      } else if (ft == "SH01") {
        j.KObject("description_values");
        j.KArray("capital");
        j.BeginObject();
        j.KV("currency", "GBP");
        j.KV("figure", absl::StrCat(s.Range(1, 5000), ".00"));
        j.EndObject();
        j.EndArray();
        j.KDate("date", r.born - 7);
        j.EndObject();
      }
      j.KObject("links");
      if (r.version > 0) {
        j.KV("document_metadata",
             absl::StrCat("https://document-api.company-information.service."
                          "gov.uk/document/",
                          RandomId(s, 43)));
      }
      j.KV("self", absl::StrCat("/company/", n, "/filing-history/", r.id));
      j.EndObject();
      if (r.version > 0) j.KInt("pages", s.Range(1, 40));
      if (paper) j.KBool("paper_filed", true);
      if (form.subcategory[0] != '\0') j.KV("subcategory", form.subcategory);
      j.KV("transaction_id", r.id);
      j.KV("type", form.type);
      break;
    }

    case StreamKind::kOfficers: {
      const Person p = MakePerson(s, non_ascii);
      const bool corporate = r.subtype == 1;
      static constexpr const char* kRoles[] = {
          "director", "director", "director", "secretary", "llp-member"};
      const char* role = corporate ? "corporate-secretary" : s.Pick(kRoles);
      const std::string etag = ResourceEtag(r);
      const absl::CivilDay appointed = r.born - static_cast<int>(s.Uniform(30));
      const std::string nationality = s.Pick(kNationalities);
      const std::string occupation = s.Pick(kOccupations);
      const std::string corporate_name = CompanyNameFor(s, "ltd", false);
      Rng address_rng(r.seed + static_cast<uint64_t>(r.version));
      j.Key("address");
      WriteAddress(j, address_rng, /*with_country=*/true,
                   /*with_region=*/false);
      j.KDate("appointed_on", appointed);
      if (!corporate) {
        j.KV("country_of_residence", "England");
        j.KObject("date_of_birth");
        j.KInt("month", p.birth_month);
        j.KInt("year", p.birth_year);
        j.EndObject();
      }
      j.KV("etag", etag);
      if (corporate) {
        j.KObject("identification");
        j.KV("identification_type", "uk-limited-company");
        j.KV("legal_authority", "Companies Act 2006");
        j.KV("legal_form", "Limited Company");
        j.KV("place_registered", "Companies House");
        j.KV("registration_number",
             absl::StrFormat("%08d", 1 + s.Uniform(15'999'999)));
        j.EndObject();
      }
      j.KObject("links");
      j.KObject("officer");
      j.KV("appointments",
           absl::StrCat("/officers/", RandomId(s, 27), "/appointments"));
      j.EndObject();
      j.KV("self", absl::StrCat("/company/", n, "/appointments/", r.id));
      j.EndObject();
      j.KV("name", corporate ? corporate_name : OfficerName(p));
      if (!corporate) {
        j.KV("nationality", nationality);
        j.KV("occupation", occupation);
      }
      j.KV("officer_role", role);
      if (r.ended) j.KDate("resigned_on", *r.ended);
      break;
    }

    case StreamKind::kPsc: {
      const Person p = MakePerson(s, non_ascii);
      const int sub = r.subtype;
      const bool individual = sub == 0 || sub == 4;
      const bool corporate = sub == 1 || sub == 5;
      const bool legal = sub == 2 || sub == 6;
      const bool secure = sub == 3 || sub == 7;
      const bool beneficial_owner = sub >= 4;
      const std::string etag = ResourceEtag(r);
      const std::string entity_name = CompanyNameFor(s, "ltd", false);
      std::vector<std::string> natures;
      if (beneficial_owner) {
        natures.push_back(s.Pick(kBoNatures));
      } else {
        const int count = s.Range(1, 3);
        for (int i = 0; i < count; ++i) natures.push_back(s.Pick(kNatures));
        std::sort(natures.begin(), natures.end());
        natures.erase(std::unique(natures.begin(), natures.end()),
                      natures.end());
      }
      if (!secure) {
        j.Key("address");
        Rng address_rng(r.seed + static_cast<uint64_t>(r.version));
        WriteAddress(j, address_rng, /*with_country=*/true,
                     /*with_region=*/false);
      }
      if (r.ended) {
        if (secure) j.KBool("ceased", true);
        j.KDate("ceased_on", *r.ended);
      }
      if (individual) {
        j.KV("country_of_residence", "England");
        j.KObject("date_of_birth");
        j.KInt("month", p.birth_month);
        j.KInt("year", p.birth_year);
        j.EndObject();
      }
      if (secure) {
        j.KV("description", "super-secure-persons-with-significant-control");
      }
      j.KV("etag", etag);
      if (corporate || legal) {
        j.KObject("identification");
        if (corporate) j.KV("country_registered", "England");
        j.KV("legal_authority", "Companies Act 2006");
        j.KV("legal_form", corporate ? "Limited Company" : "Government Body");
        if (corporate) {
          j.KV("place_registered", "Companies House");
          j.KV("registration_number",
               absl::StrFormat("%08d", 1 + s.Uniform(15'999'999)));
        }
        j.EndObject();
      }
      if (beneficial_owner && !secure) j.KBool("is_sanctioned", false);
      j.KV("kind", PscDataKind(sub));
      j.KObject("links");
      j.KV("self",
           absl::StrCat("/company/", n, "/persons-with-significant-control/",
                        PscSegment(sub), "/", r.id));
      j.EndObject();
      if (!secure) {
        j.KV("name", individual ? PscName(p)
                     : legal    ? std::string(s.Pick(kLegalPersons))
                                : entity_name);
      }
      if (individual) {
        j.KObject("name_elements");
        j.KV("forename", p.forename);
        if (!p.middle_name.empty()) j.KV("middle_name", p.middle_name);
        j.KV("surname", PscName(p).substr(PscName(p).rfind(' ') + 1));
        j.KV("title", p.title);
        j.EndObject();
        j.KV("nationality", s.Pick(kNationalities));
      }
      if (!secure) {
        j.KArray("natures_of_control");
        for (const std::string& nature : natures) j.String(nature);
        j.EndArray();
        j.KDate("notified_on", r.born);
      }
      break;
    }

    case StreamKind::kCharges: {
      const int number = s.Range(1, 12);
      const bool satisfied = r.ended.has_value();
      const std::string etag = ResourceEtag(r);
      const std::string create_tx = TransactionId(s);
      const std::string satisfy_tx = TransactionId(s);
      const bool registered_charge = s.Chance(0.8);
      const std::string lender = s.Pick(kLenders);
      const int house = s.Range(1, 300);
      const std::string street = absl::AsciiStrToLower(s.Pick(kStreets));
      const std::string town = absl::AsciiStrToLower(s.Pick(kTowns).locality);
      const bool angle = s.Chance(0.1);
      j.KV("charge_code", absl::StrCat(n, absl::StrFormat("%04d", number)));
      j.KInt("charge_number", number);
      j.KObject("classification");
      j.KV("description",
           registered_charge ? "A registered charge" : "Legal charge");
      j.KV("type",
           registered_charge ? "charge-description" : "nature-of-charge");
      j.EndObject();
      j.KDate("created_on", r.born);
      j.KDate("delivered_on", r.born + 2);
      j.KV("etag", etag);
      j.KObject("links");
      j.KV("self", absl::StrCat("/company/", n, "/charges/", r.id));
      j.EndObject();
      j.KObject("particulars");
      j.KBool("contains_fixed_charge", true);
      j.KBool("contains_floating_charge", s.Chance(0.6));
      j.KBool("contains_negative_pledge", s.Chance(0.7));
      std::string description =
          absl::StrCat(house, " ", street, " ", town, ".");
      if (angle) {
        description = absl::StrCat("Land & buildings known as <plot ", house,
                                   "> ", street, ", ", town, ".");
      }
      if (r.large) {
        // ~100 KB of particulars.
        description.reserve(110 * 1024);
        for (int i = 0; description.size() < 100 * 1024; ++i) {
          absl::StrAppend(&description, " All that freehold property known as ",
                          i + 1, " ", street, ", ", town,
                          " registered at HM Land Registry under title number ",
                          "WYK", 100000 + i, ";");
        }
      }
      j.KV("description", description);
      j.KV("type", "brief-description");
      j.EndObject();
      j.KArray("persons_entitled");
      j.BeginObject();
      j.KV("name", lender);
      j.EndObject();
      j.EndArray();
      if (satisfied) j.KDate("satisfied_on", *r.ended);
      j.KV("status", satisfied ? "fully-satisfied" : "outstanding");
      j.KArray("transactions");
      j.BeginObject();
      j.KDate("delivered_on", r.born + 2);
      j.KV("filing_type", "create-charge-with-deed");
      j.KObject("links");
      j.KV("filing",
           absl::StrCat("/company/", n, "/filing-history/", create_tx));
      j.EndObject();
      j.EndObject();
      if (satisfied) {
        j.BeginObject();
        j.KDate("delivered_on", *r.ended);
        j.KV("filing_type", "charge-satisfaction");
        j.KObject("links");
        j.KV("filing",
             absl::StrCat("/company/", n, "/filing-history/", satisfy_tx));
        j.EndObject();
        j.EndObject();
      }
      j.EndArray();
      break;
    }

    case StreamKind::kInsolvency: {
      struct CaseType {
        const char* type;
        const char* date_type;
        const char* status;
      };
      static constexpr CaseType kCases[] = {
          {"creditors-voluntary-liquidation", "wound-up-on", "liquidation"},
          {"members-voluntary-liquidation", "declaration-solvent-on",
           "liquidation"},
          {"compulsory-liquidation", "ordered-to-wind-up-on", "liquidation"},
          {"in-administration", "administration-started-on", "administration"},
          {"corporate-voluntary-arrangement", "instrumented-on",
           "voluntary-arrangement"},
      };
      const CaseType& first = s.Pick(kCases);
      const CaseType& second = s.Pick(kCases);
      const int cases = r.version >= 2 ? 2 : 1;
      j.KArray("cases");
      for (int i = 0; i < cases; ++i) {
        const CaseType& ct = i == 0 ? first : second;
        const absl::CivilDay start =
            r.born - static_cast<int>(s.Uniform(10)) + 60 * i;
        j.BeginObject();
        j.KArray("dates");
        j.BeginObject();
        j.KDate("date", start);
        j.KV("type", ct.date_type);
        j.EndObject();
        j.EndArray();
        j.KV("number", absl::StrCat(i + 1));  // a string on the stream
        j.KArray("practitioners");
        const int practitioners = 1 + (r.version % 2);
        for (int k = 0; k < practitioners; ++k) {
          const Person p = MakePerson(s, non_ascii);
          j.BeginObject();
          j.Key("address");
          WriteAddress(j, s, /*with_country=*/false, /*with_region=*/false);
          j.KDate("appointed_on", start);
          j.KV("name", PscName(p).substr(p.title.size() + 1));
          j.KV("role", "practitioner");
          j.EndObject();
        }
        j.EndArray();
        j.KV("type", ct.type);
        j.EndObject();
      }
      j.EndArray();
      j.KV("etag", ResourceEtag(r));
      j.KArray("status");
      j.String(first.status);
      if (cases == 2 && std::string_view(second.status) != first.status) {
        j.String(second.status);
      }
      j.EndArray();
      break;
    }

    case StreamKind::kDisqualifiedOfficers: {
      const Person p = MakePerson(s, non_ascii);
      const bool natural = r.subtype == 0;
      const std::string etag = ResourceEtag(r);
      const std::string corporate_name = CompanyNameFor(s, "ltd", false);
      const std::string corporate_number =
          absl::StrFormat("%08d", 1 + s.Uniform(15'999'999));
      const int count = 1 + std::min(r.version, 2);
      if (!natural) {
        j.KV("company_number", corporate_number);
        j.KV("country_of_registration", "England");
      }
      if (natural) {
        j.KV("date_of_birth", FormatDay(absl::CivilDay(
                                  p.birth_year, p.birth_month, p.birth_day)));
      }
      j.KArray("disqualifications");
      for (int i = 0; i < count; ++i) {
        const bool undertaking = s.Chance(0.7);
        const absl::CivilDay decided = r.born - static_cast<int>(s.Uniform(20));
        const int years = s.Range(2, 12);
        j.BeginObject();
        j.Key("address");
        WriteAddress(j, s, /*with_country=*/false, /*with_region=*/false);
        j.KV("case_identifier", absl::StrCat("INV", s.Range(1000000, 9999999)));
        j.KArray("company_names");
        j.String(BaseFor(static_cast<int>(s.Uniform(
                             static_cast<uint64_t>(options.company_pool_size))))
                     .name);
        j.EndArray();
        if (!undertaking) j.KV("court_name", s.Pick(kCourts));
        j.KV("disqualification_type",
             undertaking ? "undertaking" : "court-order");
        j.KDate("disqualified_from", decided + 21);
        j.KDate("disqualified_until", AddYears(decided + 21, years) - 1);
        if (!undertaking) j.KDate("heard_on", decided);
        j.KObject("reason");
        j.KV("act", "company-directors-disqualification-act-1986");
        j.KV("description_identifier", "misconduct");
        j.KV("section", "6");
        j.EndObject();
        if (undertaking) j.KDate("undertaken_on", decided);
        j.EndObject();
      }
      j.EndArray();
      j.KV("etag", etag);
      if (natural) j.KV("forename", p.forename);
      j.KV("kind",
           natural ? "natural-disqualification" : "corporate-disqualification");
      j.KObject("links");
      j.KV("self", absl::StrCat("/disqualified-officers/",
                                natural ? "natural" : "corporate", "/", r.id));
      j.EndObject();
      if (!natural) j.KV("name", corporate_name);
      if (natural) {
        j.KV("nationality", s.Pick(kNationalities));
        if (!p.middle_name.empty()) j.KV("other_forenames", p.middle_name);
        j.KV("surname", p.surname);
        j.KV("title", p.title);
      }
      break;
    }

    case StreamKind::kExemptions: {
      static constexpr const char* kExemptionKeys[] = {
          "disclosure_transparency_rules_chapter_five_applies",
          "psc_exempt_as_shares_admitted_on_market",
          "psc_exempt_as_trading_on_regulated_market",
          "psc_exempt_as_trading_on_uk_regulated_market",
      };
      static constexpr const char* kExemptionTypes[] = {
          "disclosure-transparency-rules-chapter-five-applies",
          "psc-exempt-as-shares-admitted-on-market",
          "psc-exempt-as-trading-on-regulated-market",
          "psc-exempt-as-trading-on-uk-regulated-market",
      };
      const int which = static_cast<int>(s.Uniform(4));
      const absl::CivilDay from = r.born - static_cast<int>(s.Uniform(2000));
      j.KV("etag", ResourceEtag(r));
      j.KObject("exemptions");
      j.KObject(kExemptionKeys[which]);
      j.KV("exemption_type", kExemptionTypes[which]);
      j.KArray("items");
      j.BeginObject();
      j.KDate("exempt_from", from);
      if (r.ended) j.KDate("exempt_to", *r.ended);
      j.EndObject();
      j.EndArray();
      j.EndObject();
      j.EndObject();
      j.KV("kind", "exemptions");
      j.KArray("links");  // an array in CH's spec
      j.BeginObject();
      j.KV("self", absl::StrCat("/company/", n, "/exemptions"));
      j.EndObject();
      j.EndArray();
      break;
    }

    case StreamKind::kPscStatements: {
      const int which = static_cast<int>(s.Uniform(std::size(kStatements)));
      const bool linked = which == 5;
      const Person p = MakePerson(s, non_ascii);
      const std::string psc_id = RandomId(s, 27);
      if (r.ended) j.KDate("ceased_on", *r.ended);
      j.KV("etag", ResourceEtag(r));
      j.KV("kind", "persons-with-significant-control-statement");
      if (linked) j.KV("linked_psc_name", PscName(p));
      j.KObject("links");
      if (linked) {
        j.KV("person_with_significant_control",
             absl::StrCat("/company/", n,
                          "/persons-with-significant-control/individual/",
                          psc_id));
      }
      j.KV("self",
           absl::StrCat("/company/", n,
                        "/persons-with-significant-control-statements/", r.id));
      j.EndObject();
      j.KDate("notified_on", r.born);
      j.KV("statement", kStatements[which]);
      break;
    }

    case StreamKind::kCompanies:
      break;
  }
  j.EndObject();
}

}  // namespace chstream::ingest::sim
