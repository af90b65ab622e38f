#include "storage/event.h"

#include <utility>

#include "gtest/gtest.h"

namespace chstream::storage {
namespace {

CompanyFields Acme() {
  CompanyFields f;
  f.company_name = "ACME LIMITED";
  f.registered_office_address.locality = "Cardiff";
  f.sic_codes = {"62020"};
  return f;
}

TEST(OptionalBoxTest, CopiesTheValueNotThePointer) {
  Event a;
  a.company = Acme();
  Event b = a;
  ASSERT_TRUE(b.company.has_value());
  EXPECT_NE(&*a.company, &*b.company);
  EXPECT_EQ(a, b);
  b.company->company_name = "OTHER";
  EXPECT_EQ(a.company->company_name, "ACME LIMITED");
  EXPECT_NE(a, b);
  b = a;
  EXPECT_EQ(a, b);
  EXPECT_NE(&*a.company, &*b.company);
}

TEST(OptionalBoxTest, MovesThePointer) {
  Event a;
  a.company = Acme();
  const CompanyFields* fields = &*a.company;
  Event b = std::move(a);
  EXPECT_EQ(&*b.company, fields);
  Event c;
  c = std::move(b);
  EXPECT_EQ(&*c.company, fields);
}

TEST(OptionalBoxTest, EmptyEqualsOnlyEmpty) {
  OptionalBox<CompanyFields> none, other_none = std::nullopt;
  OptionalBox<CompanyFields> empty_fields = CompanyFields{};
  EXPECT_EQ(none, other_none);
  EXPECT_FALSE(none.has_value());
  EXPECT_NE(none, empty_fields);
  EXPECT_EQ(empty_fields, OptionalBox<CompanyFields>(CompanyFields{}));
  empty_fields.reset();
  EXPECT_EQ(none, empty_fields);
  none.emplace().company_name = "X";
  EXPECT_EQ(none->company_name, "X");
  OptionalBox<CompanyFields> copy_of_none = other_none;
  EXPECT_FALSE(copy_of_none.has_value());
}

}  // namespace
}  // namespace chstream::storage
