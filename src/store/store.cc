#include "store/store.h"

namespace mte::store {

std::string_view ToString(EnroleeState state) {
  switch (state) {
    case EnroleeState::kPending:
      return "pending";
    case EnroleeState::kEnrolled:
      return "enrolled";
  }
  return "unknown";
}

std::string_view ToString(DeliveryStatus status) {
  switch (status) {
    case DeliveryStatus::kNone:
      return "none";
    case DeliveryStatus::kPending:
      return "pending";
    case DeliveryStatus::kDelivered:
      return "delivered";
  }
  return "unknown";
}

std::string_view ToString(TokenState state) {
  switch (state) {
    case TokenState::kActive:
      return "active";
    case TokenState::kSpent:
      return "spent";
    case TokenState::kRevoked:
      return "revoked";
  }
  return "unknown";
}

}  // namespace mte::store
