//! Attacks the loader with a component of the wrong world: it exports
//! `airlock:adapter/contract@0.0.1` instead of `@0.1.0`.

wit_bindgen::generate!({
    inline: "
        package airlock:adapter@0.0.1;

        interface contract {
            validate-config: func(config: string) -> result<_, string>;
        }

        world adapter {
            export contract;
        }
    ",
    world: "adapter",
});

struct Outdated;

impl exports::airlock::adapter::contract::Guest for Outdated {
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Outdated);
