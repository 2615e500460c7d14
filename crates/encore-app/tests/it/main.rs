//! The one integration-test binary of encore-app.

mod architecture;
