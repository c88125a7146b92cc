#include "base/deadline.h"

#include "absl/strings/str_cat.h"

namespace tandem {

absl::Status Deadline::Exceeded(absl::string_view what) const {
  return absl::DeadlineExceededError(absl::StrCat(what, ": deadline ", absl::FormatDuration(timeout_), " exceeded"));
}

}  // namespace tandem
